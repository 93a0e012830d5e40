"""Receiving and vetting an uploaded video before any work is queued for it.

The multipart body is parsed as it streams in and the file part goes straight to its own temporary
file, so a request over the size limit is cut off at the limit instead of being buffered whole. The
file is then probed with PyAV (a container with a video stream, a duration within the limit, first
frames that decode, frame size and rate within sane bounds); each failure is a `Problem` with its
own reason code. Messages never carry FFmpeg's file name: that is the server's temporary path.
"""

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av
from pydantic import BaseModel, ConfigDict
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from service.api.errors import Problem
from service.decode import Limits, open_source
from service.settings import Settings

_OTHER_PART_LIMIT = 64 * 1024  # bytes any non-file form field may hold
_MIN_SIDE = 16  # a frame must show something


# The OpenAPI request body of every route that takes a video as multipart field `file`.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            }
        },
    }
}


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_seconds: float
    min_frames: int
    decode: Limits
    """Frame size and rate (header and every decoded frame), timeline, decoding time."""
    field: str = "file"

    @classmethod
    def of(cls, settings: Settings) -> "UploadLimits":
        """The limits every upload route (and the local client) applies."""
        return cls(
            settings.upload_max_bytes,
            settings.upload_max_s,
            settings.upload_min_frames,
            Limits.of(settings, upload=True),
        )


class VideoInfo(BaseModel):
    """What the probe learnt; `duration` decides between the synchronous and the async answer."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    bytes: int
    """Size of the upload."""
    duration: float
    """Seconds of video."""
    width: int
    """Pixels."""
    height: int
    """Pixels."""
    fps: float
    """The video stream's frame rate."""
    codec: str
    """The video codec's FFmpeg name, e.g. `h264`."""


class _FilePart:
    """Multipart callbacks that copy the named file field to `sink`, enforcing the size limit."""

    def __init__(self, sink, limits: UploadLimits) -> None:
        self.sink = sink
        self.limits = limits
        self.found = False
        self.size = 0
        self._header_field = b""
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False
        self._other_size = 0

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._in_file = False
        self._other_size = 0

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field = data[start:end].lower()

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._headers[self._header_field] = (
            self._headers.get(self._header_field, b"") + (data[start:end])
        )

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._in_file = name == self.limits.field and not self.found
        self.found = self.found or self._in_file

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            self._other_size += end - start
            if self._other_size > _OTHER_PART_LIMIT:
                raise Problem(413, "field_too_large", "a form field other than the file is too big")
            return
        self.size += end - start
        if self.size > self.limits.max_bytes:
            raise Problem(
                413,
                "too_large",
                f"upload exceeds the limit of {self.limits.max_bytes} bytes",
                limit_bytes=self.limits.max_bytes,
            )
        self.sink.write(data[start:end])


async def receive_upload(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    limits: UploadLimits,
    directory: Path | None = None,
) -> Path:
    """Stream the multipart file field to a new temporary file and return its path.

    The caller owns the file and deletes it; on any error it is deleted here.
    """
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise Problem(415, "not_multipart", "send the video as multipart/form-data")
    # A declared length far past the limit is refused before a byte is read.
    if content_length and content_length.isdigit():
        if int(content_length) > limits.max_bytes + _OTHER_PART_LIMIT:
            raise Problem(
                413,
                "too_large",
                f"upload exceeds the limit of {limits.max_bytes} bytes",
                limit_bytes=limits.max_bytes,
            )
    fd, name = tempfile.mkstemp(prefix="lumos-upload-", suffix=".video", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as sink:
            part = _FilePart(sink, limits)
            parser = MultipartParser(options[b"boundary"], part.callbacks())
            try:
                async for chunk in body:
                    parser.write(chunk)
                parser.finalize()
            except MultipartParseError as exc:
                raise Problem(
                    400, "malformed_multipart", f"the multipart body is malformed: {exc}"
                ) from exc
        if not part.found:
            raise Problem(
                422,
                "missing_file",
                f"no form field named {limits.field!r} holding the video",
                field=limits.field,
            )
        if part.size == 0:
            raise Problem(400, "empty_file", "the uploaded file is empty")
        return path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def probe_video(path: Path, limits: UploadLimits) -> VideoInfo:
    """Check that `path` is a video the ingest can clip; blocking, so run it in a thread."""
    try:
        # Only container demuxers (FFmpeg refuses a playlist or script, which would open other
        # files); decoders that peek at the first frames while opening refuse a frame over the
        # limit instead of allocating it (a 15000 x 15000 PNG is 225 MB).
        container = open_source(str(path), limits.decode)
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise Problem(
            415,
            "invalid_container",
            "not a readable media container of an accepted format (mp4/mov, matroska/webm, "
            f"avi, mpegts, flv, ogg, asf, mpeg-ps): {ffmpeg_reason(exc)}",
        ) from exc
    with container:
        if not container.streams.video:
            raise Problem(415, "no_video_stream", "the container holds no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # e.g. a forged codec id: FFmpeg has no decoder for it
            raise Problem(422, "undecodable", "the video stream's codec has no decoder here")
        _check_frames(stream, limits.decode)
        duration = _duration(container, stream)
        if duration > limits.max_seconds:
            raise Problem(
                422,
                "too_long",
                f"video lasts {duration:.1f} s, the limit is {limits.max_seconds:g} s",
                limit_seconds=limits.max_seconds,
            )
        decoded = 0
        try:
            for _ in container.decode(stream):
                decoded += 1
                if decoded >= limits.min_frames:
                    break
        except av.FFmpegError as exc:
            raise Problem(
                422, "undecodable", f"decoding the first frames failed: {ffmpeg_reason(exc)}"
            ) from exc
        if decoded < limits.min_frames:
            raise Problem(
                422,
                "too_few_frames",
                f"the video has {decoded} decodable frames, at least {limits.min_frames} needed",
                min_frames=limits.min_frames,
            )
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            bytes=path.stat().st_size,
            duration=duration,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate) if rate else 0.0,
            codec=stream.codec_context.name,
        )


def ffmpeg_reason(exc: Exception) -> str:
    """An FFmpeg error's reason without its file name (the server's temporary path)."""
    return getattr(exc, "strerror", None) or str(exc)


def undecodable(exc: Exception) -> Problem:
    """A video that passed the probe but failed to decode further in: the upload's fault."""
    return Problem(422, "undecodable", f"decoding the video failed: {ffmpeg_reason(exc)}")


def _check_frames(stream: av.VideoStream, limits: Limits) -> None:
    """Refuse frame sizes and rates the header declares, before any decoding (decoding checks
    every frame again: a header can lie)."""
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > limits.max_pixels or min(width, height) < _MIN_SIDE:
        raise Problem(
            422,
            "bad_dimensions",
            f"frames of {width}x{height} pixels (0 when over the limit); at least {_MIN_SIDE} "
            f"a side and at most {limits.max_pixels} in all",
        )
    rate = stream.average_rate or stream.guessed_rate
    if rate and float(rate) > limits.max_fps:
        raise Problem(
            422,
            "bad_frame_rate",
            f"{float(rate):g} frames per second; at most {limits.max_fps:g}",
        )


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """Seconds of video; for containers that do not say (e.g. streamed WebM), the last packet's."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    last = 0.0
    for packet in container.demux(stream):
        if packet.pts is not None and packet.time_base is not None:
            last = max(last, float(packet.pts * packet.time_base))
    container.seek(0)
    return last
