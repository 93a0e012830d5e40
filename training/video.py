"""Reading and writing whole video files with PyAV.

Training clips are short (tens to a few hundred frames), so a file is decoded in one go and resized
in FFmpeg's scaler while it is decoded: that is far cheaper than resizing full-size RGB arrays in
Python, and it is the same scaler the service's decoder uses, so both see the same pixels. A frame
folder (`img_00001.jpg`, ...) is read the same way, through FFmpeg's image-sequence demuxer.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter

#: Frame-folder naming of the TSN / R(2+1)D-BERT convention that the dark-video repositories follow.
FRAME_PATTERN = "img_%05d.jpg"

Codec = Literal["libx264", "mpeg4", "mjpeg"]


class VideoError(Exception):
    """A video that cannot be read; carries the path so that callers can log or list it."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@contextmanager
def _open_stream(path: Path) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open a file or frame folder and its first video stream, turning FFmpeg errors into ours."""
    if not path.exists():
        raise VideoError(path, "no such file")
    source, options = (
        (str(path / FRAME_PATTERN), {"format": "image2"}) if path.is_dir() else (str(path), {})
    )
    try:
        container = av.open(source, **options)
    except (av.FFmpegError, OSError) as error:
        raise VideoError(path, f"cannot open: {error}") from error
    with container:
        if not container.streams.video:
            raise VideoError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield container, stream


def read_video(path: Path | str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode every frame of `path` to a `T x H x W x 3` uint8 RGB array.

    `size` is (width, height), the order FFmpeg and the clip spec's `resize` use; None keeps the
    stored size.
    """
    path = Path(path)
    width, height = size if size is not None else (None, None)
    scaler = VideoReformatter()  # one scaling context for the file, not one per frame
    with _open_stream(path) as (container, stream):
        try:
            frames = [
                scaler.reformat(frame, width=width, height=height, format="rgb24").to_ndarray()
                for frame in container.decode(stream)
            ]
        except (av.FFmpegError, OSError) as error:
            raise VideoError(path, f"cannot decode: {error}") from error
    if not frames:
        raise VideoError(path, "no frames")
    return np.stack(frames)


def check_decodes(path: Path | str) -> None:
    """Raise VideoError unless `path` opens and its first frame decodes (a cheap check)."""
    path = Path(path)
    with _open_stream(path) as (container, stream):
        try:
            next(container.decode(stream))
        except StopIteration:
            raise VideoError(path, "no frames") from None
        except (av.FFmpegError, OSError) as error:
            raise VideoError(path, f"cannot decode: {error}") from error


def write_video(
    path: Path | str,
    frames: np.ndarray,
    fps: float,
    codec: Codec = "libx264",
    quality: int | None = None,
    preset: str = "veryfast",
    tune: str | None = None,
) -> None:
    """Encode a `T x H x W x 3` uint8 RGB array (even H and W) as a 4:2:0 video file, or with
    "mjpeg" as a frame folder `path/img_00001.jpg, ...`.

    `quality` is x264's CRF (0-51, default 23) or the MPEG-4 / JPEG quantiser (2-31, default 5);
    lower is better; `preset` and `tune` are x264's ("grain" keeps sensor noise). The generated
    benchmark must be identical for identical seeds, so encoding runs on one thread (x264's frame
    threads make the output depend on timing) and x264 without its assembly.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected T x H x W x 3 uint8 frames, got {frames.shape} {frames.dtype}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"4:2:0 video needs even frame sizes, got {width}x{height}")
    if codec == "libx264":
        # x264's assembly made an encode depend on the encodes before it in the process (on an
        # AVX-512 Xeon); its C code does not.
        crf = str(23 if quality is None else quality)
        options = {"crf": crf, "preset": preset, "x264-params": "no-asm=1"}
        if tune is not None:
            options["tune"] = tune
    else:
        qscale = str(5 if quality is None else quality)
        options = {"qmin": qscale, "qmax": qscale}
    target, container_options = str(path), {}
    if codec == "mjpeg":
        Path(path).mkdir(parents=True, exist_ok=True)
        target, container_options = str(Path(path) / FRAME_PATTERN), {"format": "image2"}
    with av.open(target, "w", **container_options) as container:
        stream = container.add_stream(
            codec, rate=Fraction(fps).limit_denominator(1001), options=options
        )
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
