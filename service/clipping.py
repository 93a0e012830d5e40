"""Frames -> clips: the region and rate a clip's frames are sampled at, the sliding window that
cuts them, and a video file's clips in order (uploads, calibration, benchmarks).

Clips of one stream keep a sequence number and say how they were cut: media-time gaps, dropped
frames and reconnects (`Integrity`), and how dark they are (`Illumination`).
"""

import threading
import uuid
from collections import deque
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np

from model.clip import ClipSpec
from service.cameras import Camera
from service.clips import Clip, Integrity
from service.decode import Frame, Geometry, Limits, decode_frames, open_source
from service.illumination import measure
from service.metrics import STREAM_FRAMES_DECODED
from service.settings import Settings

UPLOAD_LABEL = "upload"
"""The `stream` metric label of every upload: upload ids are unbounded, a label must not be."""


def geometry(spec: ClipSpec, camera: Camera | None = None) -> Geometry:
    """The model's decode size and square side, from the camera's region of interest when it
    has one."""
    width, height = spec.decode_size
    roi = camera.roi.box() if camera is not None and camera.roi is not None else None
    return Geometry(width, height, spec.side, roi)


def cadence(spec: ClipSpec, settings: Settings, camera: Camera | None = None) -> tuple[float, int]:
    """(sampled fps, stride) clips are cut at: a camera's own values where it has them, else the
    model's rate and `clip_stride` (unset: back-to-back clips of `spec.frames`)."""
    fps = camera.sampling if camera else None
    stride = camera.stride if camera else None
    return fps or spec.fps, stride or settings.clip_stride or spec.frames


class Clipper:
    """A sliding window over one stream's frames: a clip of `length` frames every `stride`."""

    def __init__(self, stream: str, length: int, stride: int, live: bool) -> None:
        self.stream = stream
        self.length = length
        self.stride = stride
        self.live = live
        self.seq = 0
        self._window: deque[Frame] = deque(maxlen=length)
        self._since = 0

    def push(self, frame: Frame) -> Clip | None:
        self._window.append(frame)
        self._since += 1
        if len(self._window) < self.length or (self.seq and self._since < self.stride):
            return None
        self._since = 0
        return self._cut(list(self._window))

    def flush(self) -> Clip | None:
        """At the end of a file: one clip, frames looped, for a source shorter than a clip."""
        if self.seq or not self._window:
            return None
        return self._cut(list(self._window))

    def _cut(self, frames: list[Frame]) -> Clip:
        images = np.stack([frames[i % len(frames)].image for i in range(self.length)])
        # Within one connection media time is exact; across a reconnect only wall time relates.
        gaps = [
            b.pts - a.pts if a.epoch == b.epoch else b.wall - a.wall for a, b in pairwise(frames)
        ]
        dropped = sum(max(0, round(g / b.step) - 1) for g, b in zip(gaps, frames[1:], strict=True))
        clip = Clip(
            id=uuid.uuid4().hex,
            stream=self.stream,
            seq=self.seq,
            start=frames[0].wall,
            end=frames[-1].wall,
            timestamps=tuple(round(f.pts, 4) for f in frames),
            live=self.live,
            integrity=Integrity(
                dropped=dropped,
                max_gap=round(max(gaps, default=0.0), 4),
                reconnect=frames[0].epoch != frames[-1].epoch,
            ),
            illumination=measure(images),
            frames=images,
        )
        self.seq += 1
        return clip


def cut_file(
    path: Path, stream: str, spec: ClipSpec, settings: Settings, cancel: threading.Event
) -> Iterator[Clip]:
    """The clips of a video file, in order; stops early once `cancel` is set."""
    fps, stride = cadence(spec, settings)
    clipper = Clipper(stream, spec.frames, stride, live=False)
    limits = Limits.of(settings, upload=True)
    with open_source(str(path), limits) as container:
        frames = decode_frames(
            container,
            geometry(spec),
            fps,
            limits,
            threads=settings.decode_threads,
            integrate=spec.integrate,
        )
        for frame in frames:
            if cancel.is_set():
                return
            STREAM_FRAMES_DECODED.labels(stream=UPLOAD_LABEL).inc()
            if clip := clipper.push(frame):
                yield clip
    if clip := clipper.flush():
        yield clip
