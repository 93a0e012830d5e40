"""PyAV decoding of files and live sources into frames sized for the model, at the model's rate.

Decoding is the expensive part of ingest, so: FFmpeg decodes with its own threads; frames are
sampled to the model's fps on their timestamps *before* any conversion, so a frame that will never
be used is never converted; and the one conversion done (YUV -> RGB at the model's resize) runs in
FFmpeg's scaler, not in Python. Only the centre crop is a numpy slice.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import av
import numpy as np
from av.video.reformatter import VideoReformatter

LIVE_SCHEMES = ("rtsp", "rtsps", "http", "https")
_SECRET_PARAMS = {"password", "pass", "pwd", "passwd", "token", "key", "secret", "auth", "sig"}


def is_live(url: str) -> bool:
    return urlsplit(url).scheme.lower() in LIVE_SCHEMES


def redact_url(url: str) -> str:
    """`url` with its user info and secret-looking query values replaced by `***`.

    Use it for every URL that reaches a log line, a metric or an API answer.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = urlencode(
        [
            (k, "***" if k.lower() in _SECRET_PARAMS else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True, slots=True)
class Geometry:
    """Resize to (width, height) in the scaler, then take the centre `crop x crop`.

    With a region of interest (relative left, top, right, bottom) the region stands in for the
    frame: the scaler sizes the whole frame so that the region comes out at (width, height), and
    the region is sliced from it, so an action in a corner of a wide view keeps its pixels
    instead of being shrunk with the rest of the frame.
    """

    width: int
    height: int
    crop: int
    roi: tuple[float, float, float, float] | None = None

    def scaled(self) -> tuple[int, int, int, int]:
        """(frame width, frame height, left, top): what the scaler makes, and where the region
        (of `width x height`) starts in it."""
        if self.roi is None:
            return self.width, self.height, 0, 0
        x0, y0, x1, y1 = self.roi
        full_w = max(self.width, round(self.width / (x1 - x0)))
        full_h = max(self.height, round(self.height / (y1 - y0)))
        left = min(round(x0 * full_w), full_w - self.width)
        top = min(round(y0 * full_h), full_h - self.height)
        return full_w, full_h, left, top


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray
    """`crop x crop x 3` uint8 RGB."""
    pts: float
    """Media time in seconds."""
    wall: float
    """Wall-clock time it was decoded."""
    step: float
    """The interval expected before this frame (sampling step or source frame interval)."""
    epoch: int
    """Which connection of the source it came from; increases with each reconnect."""
    view: np.ndarray | None = None
    """The whole frame at evidence size (`view_height`), when asked for."""


def open_source(
    url: str, *, transport: str = "tcp", open_timeout: float = 10.0, read_timeout: float = 10.0
) -> av.container.InputContainer:
    """Open a file or live source; a live read that blocks longer than `read_timeout` fails."""
    if not is_live(url):
        return av.open(url, metadata_errors="ignore")
    options = {"rtsp_transport": transport} if url.lower().startswith("rtsp") else {}
    return av.open(
        url, options=options, timeout=(open_timeout, read_timeout), metadata_errors="ignore"
    )


def decode_frames(
    container: av.container.InputContainer,
    geometry: Geometry,
    fps: float,
    *,
    threads: int = 2,
    epoch: int = 0,
    realtime: bool = False,
    view_height: int = 0,
) -> Iterator[Frame]:
    """Frames of the first video stream, sampled to `fps` on their timestamps.

    A frame is kept when its time reaches the next due time (within half a source frame); the
    due time then advances by one step, from the due time itself, so that frames kept a little
    late (25 fps sampled to 12) do not stretch the rate, or from the frame's time after a gap of
    more than a step, so that a gap resynchronises the sampler instead of letting it keep every
    frame until it catches up. `realtime` paces a file to its timestamps, so that it can stand in
    for a camera. `view_height` adds each frame whole, at that height, for event evidence.
    """
    if not container.streams.video:
        raise ValueError("the source has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    rate = stream.average_rate or stream.guessed_rate
    source_step = 1.0 / float(rate) if rate else 0.0
    step = 1.0 / fps
    expected = max(step, source_step)
    tolerance = source_step / 2
    full_w, full_h, region_left, region_top = geometry.scaled()
    top = region_top + (geometry.height - geometry.crop) // 2
    left = region_left + (geometry.width - geometry.crop) // 2
    # One scaler for the stream: a frame's own `to_ndarray(width=...)` builds and frees an
    # FFmpeg scaling context per frame, a fifth of the conversion's cost at 720p.
    scaler = VideoReformatter()
    viewer = VideoReformatter()
    due: float | None = None
    origin = 0.0  # wall-clock time of media time 0, when pacing
    pts = -source_step
    for frame in container.decode(stream):
        # A frame without a timestamp (e.g. the first of an RTSP session) follows the previous.
        pts = frame.time if frame.time is not None else pts + source_step
        if due is not None and pts < due - tolerance:
            continue
        due = (due if due is not None and pts - due < step else pts) + step
        if realtime:
            origin = origin or (time.time() - pts)
            time.sleep(max(0.0, origin + pts - time.time()))
        now = time.time()
        image = scaler.reformat(frame, full_w, full_h, "rgb24").to_ndarray()
        crop = image[top : top + geometry.crop, left : left + geometry.crop]
        view = None
        if view_height:
            height = min(view_height, frame.height) // 2 * 2
            width = round(frame.width * height / frame.height / 2) * 2
            view = viewer.reformat(frame, width, height, "rgb24").to_ndarray()
        yield Frame(np.ascontiguousarray(crop), pts, now, expected, epoch, view)
