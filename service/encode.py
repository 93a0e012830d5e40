"""Writing video and stills: H.264 MP4 that browsers play, and JPEG.

Event evidence and annotated videos are both written here, so both play the same everywhere:
yuv420p (what browsers decode), even dimensions (what 4:2:0 needs), `+faststart` (playable while
it downloads).
"""

import io
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


class H264Writer:
    """Frames (uint8 RGB, all one size) in, an MP4 file out; use as a context manager."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        self.container = av.open(str(path), "w", options={"movflags": "+faststart"})
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height = width - width % 2, height - height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"preset": "veryfast", "crf": "23"}
        self.stream.codec_context.time_base = 1 / rate
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        image = image[: self.stream.height, : self.stream.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        frame.time_base = self.stream.codec_context.time_base
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def __enter__(self) -> "H264Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()


def write_h264(path: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write `frames` to `path`; returns how many were written."""
    writer: H264Writer | None = None
    try:
        for image in frames:
            if writer is None:
                writer = H264Writer(path, fps, image.shape[1], image.shape[0])
            writer.write(image)
    finally:
        if writer is not None:
            writer.__exit__()
    return writer.frames if writer else 0


def jpeg_bytes(image: np.ndarray, quality: int = 85) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "JPEG", quality=quality)
    return out.getvalue()


def write_jpeg(path: Path, image: np.ndarray, quality: int = 85) -> None:
    path.write_bytes(jpeg_bytes(image, quality))
