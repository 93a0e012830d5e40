"""The clip codec, and the sliding window that cuts frames into clips."""

import json
import struct

import numpy as np
import pytest

from service.clipping import Clipper
from service.clips import ClipFormatError, Integrity, decode, encode
from service.decode import Frame
from tests.service.clips import make_clip


def test_round_trip_keeps_every_field_and_the_exact_pixels() -> None:
    clip = make_clip(frames=np.arange(96, dtype=np.uint8).reshape(2, 4, 4, 3))
    data = encode(clip)
    back = decode(data)
    assert back.frames.tobytes() == clip.frames.tobytes()
    assert back.frames.shape == (2, 4, 4, 3) and back.shape == (2, 4, 4)
    for name in ("id", "stream", "seq", "start", "end", "timestamps", "live"):
        assert getattr(back, name) == getattr(clip, name)
    assert back.integrity == clip.integrity and back.illumination == clip.illumination


def test_wire_form_is_compact_pixels_plus_a_small_header() -> None:
    frames = np.zeros((16, 64, 64, 3), np.uint8)
    data = encode(make_clip(frames=frames, timestamps=tuple(range(16))))
    assert len(data) - frames.nbytes < 800
    (length,) = struct.unpack(">I", data[:4])
    assert json.loads(data[4 : 4 + length])["shape"] == [16, 64, 64, 3]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00\x00\x05{bad}",
        struct.pack(">I", 2) + b"{}",
        encode(make_clip())[:-1],  # one pixel byte short
        encode(make_clip()).replace(b'"format":1', b'"format":9'),
    ],
)
def test_bytes_that_are_not_a_clip_are_refused_clearly(data: bytes) -> None:
    with pytest.raises(ClipFormatError):
        decode(data)


def frame(t: float, epoch: int = 0, wall: float | None = None, value: int = 0) -> Frame:
    image = np.full((4, 4, 3), value, np.uint8)
    return Frame(image, t, 1000.0 + t if wall is None else wall, 0.1, epoch)


def test_window_cuts_a_clip_every_stride_frames() -> None:
    clipper = Clipper("s", length=4, stride=2, live=False)
    clips = [c for i in range(10) if (c := clipper.push(frame(i / 10, value=i)))]
    # Frames 0-3, then every 2 frames: 2-5, 4-7, 6-9.
    assert [c.seq for c in clips] == [0, 1, 2, 3]
    assert [int(c.frames[0, 0, 0, 0]) for c in clips] == [0, 2, 4, 6]
    assert all(c.frames.shape == (4, 4, 4, 3) for c in clips)
    assert clips[1].timestamps == (0.2, 0.3, 0.4, 0.5)
    assert clips[1].start == 1000.2 and clips[1].end == 1000.5
    assert clipper.flush() is None


def test_stride_longer_than_the_clip_skips_frames_between_clips() -> None:
    clipper = Clipper("s", length=2, stride=3, live=False)
    clips = [c for i in range(8) if (c := clipper.push(frame(i / 10, value=i)))]
    assert [int(c.frames[0, 0, 0, 0]) for c in clips] == [0, 3, 6]  # starts 3 frames apart


def test_integrity_counts_missing_frames_the_largest_gap_and_reconnects() -> None:
    clipper = Clipper("s", length=4, stride=4, live=True)
    clean = [clipper.push(frame(t)) for t in (0.0, 0.1, 0.2, 0.3)][-1]
    assert clean.integrity == Integrity(0, 0.1, False)
    # 0.5 -> 0.9 misses 3 frames at a 0.1 s step.
    gappy = [clipper.push(frame(t)) for t in (0.4, 0.5, 0.9, 1.0)][-1]
    assert gappy.integrity.dropped == 3 and gappy.integrity.max_gap == pytest.approx(0.4)
    # After a reconnect media time restarts; wall time measures the outage.
    pushed = [frame(1.1), frame(1.2), frame(0.0, epoch=1, wall=1006.2), frame(0.1, 1, 1006.3)]
    across = [clipper.push(f) for f in pushed][-1]
    assert across.integrity.reconnect and across.integrity.max_gap == pytest.approx(5.0)


def test_a_source_shorter_than_one_clip_still_yields_one_looped_clip() -> None:
    clipper = Clipper("s", length=5, stride=5, live=False)
    assert all(clipper.push(frame(i / 10, value=i)) is None for i in range(2))
    clip = clipper.flush()
    assert clip is not None and [int(v) for v in clip.frames[:, 0, 0, 0]] == [0, 1, 0, 1, 0]
    assert clip.timestamps == (0.0, 0.1)
