"""A clip as it travels from ingest to inference, and its compact binary form.

The wire form is a 4-byte big-endian header length, a JSON header, then the raw uint8 frames: a
16 x 64 x 64 clip is 196 KiB of pixels and a few hundred bytes of header, decoded without a copy
(`np.frombuffer`) and without pickle, so a queue entry can never run code.
"""

import json
import struct
from dataclasses import asdict, dataclass, field

import numpy as np

from service.illumination import Illumination

FORMAT = 1
_LENGTH = struct.Struct(">I")


class ClipFormatError(ValueError):
    """Bytes that are not a clip of this format."""


@dataclass(frozen=True, slots=True)
class Integrity:
    """What went missing while the clip was cut; all zero for a clean clip."""

    __pydantic_config__ = {"use_attribute_docstrings": True}

    dropped: int = 0
    """Frames missing between the clip's first and last frame (source gaps, buffer drops)."""
    max_gap: float = 0.0
    """Largest time between two consecutive frames of the clip, in seconds."""
    reconnect: bool = False
    """The clip holds frames from before and after a reconnect of its source."""


@dataclass(frozen=True, slots=True)
class Clip:
    """uint8 RGB frames `T x S x S x 3` plus what is known about where and when they came from."""

    id: str
    stream: str
    """The camera id, or the upload's id; never a URL (URLs may hold credentials)."""
    seq: int
    """Position of the clip in its stream, from 0, in the order it was cut."""
    start: float
    """Wall-clock time (Unix seconds) the first frame was decoded."""
    end: float
    """Wall-clock time the last frame was decoded; staleness is measured from here."""
    timestamps: tuple[float, ...]
    """Media time of each frame in seconds (restarts with each connection of a live source)."""
    live: bool
    """Live clips may be dropped when stale or when a queue overflows; file clips never are."""
    integrity: Integrity
    illumination: Illumination
    frames: np.ndarray = field(repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames, height, width): clips batch together only when this matches."""
        t, h, w, _ = self.frames.shape
        return t, h, w


def encode(clip: Clip) -> bytes:
    frames = np.ascontiguousarray(clip.frames, dtype=np.uint8)
    header = {
        "format": FORMAT,
        "id": clip.id,
        "stream": clip.stream,
        "seq": clip.seq,
        "start": clip.start,
        "end": clip.end,
        "timestamps": clip.timestamps,
        "live": clip.live,
        "integrity": asdict(clip.integrity),
        "illumination": asdict(clip.illumination),
        "shape": frames.shape,
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((_LENGTH.pack(len(head)), head, frames.data))


def decode(data: bytes) -> Clip:
    """The clip in `data`; its frames are a read-only view of `data`, not a copy."""
    try:
        (length,) = _LENGTH.unpack_from(data)
        header = json.loads(data[_LENGTH.size : _LENGTH.size + length])
        if header.get("format") != FORMAT:
            raise ClipFormatError(f"unknown clip format {header.get('format')!r}")
        shape = tuple(int(n) for n in header["shape"])
        if len(shape) != 4 or shape[3] != 3:
            raise ClipFormatError(f"frames must be T x H x W x 3, got {shape}")
        offset = _LENGTH.size + length
        if len(data) - offset != int(np.prod(shape)):
            raise ClipFormatError(f"{len(data) - offset} bytes of frames for shape {shape}")
        frames = np.frombuffer(data, np.uint8, offset=offset).reshape(shape)
        return Clip(
            id=str(header["id"]),
            stream=str(header["stream"]),
            seq=int(header["seq"]),
            start=float(header["start"]),
            end=float(header["end"]),
            timestamps=tuple(float(t) for t in header["timestamps"]),
            live=bool(header["live"]),
            integrity=Integrity(**header["integrity"]),
            illumination=Illumination(**header["illumination"]),
            frames=frames,
        )
    except ClipFormatError:
        raise
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise ClipFormatError(f"not a clip: {exc}") from exc
