"""PyAV decoding of files and live sources into frames sized for the model, at the model's rate.

Decoding is the expensive part of ingest, so: FFmpeg decodes with its own threads; frames are
sampled to the model's fps on their timestamps *before* any conversion, so a frame that will never
be used is never converted (unless the model integrates each step's frames); and the one
conversion done (YUV -> RGB at the model's resize) runs in FFmpeg's scaler, not in Python. Only
the centre crop is a numpy slice.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from model.clip import integrated
from service.http_source import HttpSource
from service.settings import Settings
from service.urls import CAMERA_SCHEMES, Destinations
from service.urls import redact_url as redact_url  # where the ingest and camera code find it

LIVE_SCHEMES = CAMERA_SCHEMES

# The demuxers a source may use: containers of media only. Never a script or playlist
# (hls, concat, ffconcat, image2 patterns, tee, dash, sdp...): those open further files or URLs
# the service never checked. FFmpeg probes the content and refuses any demuxer not listed.
CONTAINERS = "mov,mp4,matroska,webm,avi,mpegts,flv,ogg,asf,mpeg,h264,hevc,yuv4mpegpipe"
_PROTOCOLS = {
    "file": "file",
    "rtsp": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
    "http": "http,https,tcp,tls",
}
_FORMATS = {"file": CONTAINERS, "rtsp": "rtsp", "http": f"{CONTAINERS},mpjpeg"}


def is_live(url: str) -> bool:
    return urlsplit(url).scheme.lower() in LIVE_SCHEMES


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


class LimitExceeded(ValueError):
    """A decoded frame or the decoded timeline broke a limit; `reason` is the API's code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Limits:
    """What decoding a source may produce, checked on every decoded frame, whatever the
    container's header declared."""

    max_pixels: int
    max_fps: float
    max_seconds: float | None = None
    """Media time an upload may reach; None for a camera (it runs forever)."""
    budget_s: float | None = None
    """Wall-clock time decoding may take; None for a camera."""

    @classmethod
    def of(cls, settings: Settings, upload: bool) -> "Limits":
        if not upload:
            return cls(settings.frame_max_pixels, settings.frame_max_fps)
        return cls(
            settings.frame_max_pixels,
            settings.frame_max_fps,
            settings.upload_max_s,
            settings.upload_decode_budget_s,
        )


def open_source(
    url: str,
    limits: Limits,
    *,
    destinations: Destinations | None = None,
    transport: str = "tcp",
    open_timeout: float = 10.0,
    read_timeout: float = 10.0,
) -> av.container.InputContainer:
    """Open a file or live source with only container demuxers and the source's own protocols;
    the decoders refuse a frame over `limits.max_pixels` before allocating it. A live read that
    blocks longer than `read_timeout` fails. An HTTP source is fetched by `HttpSource` under
    `destinations` (required for one), so that its redirects are checked too."""
    kind = "file" if not is_live(url) else "rtsp" if url.lower().startswith("rtsp") else "http"
    options = {
        "format_whitelist": _FORMATS[kind],
        "protocol_whitelist": _PROTOCOLS[kind],
        "max_pixels": str(limits.max_pixels),
    }
    source: str | HttpSource = url
    if kind == "rtsp":
        options["rtsp_transport"] = transport
    elif kind == "http":
        if destinations is None:
            raise ValueError("an HTTP source needs the destinations it may reach")
        source = HttpSource(url, destinations, open_timeout, read_timeout)
    timeout = (open_timeout, read_timeout) if kind == "rtsp" else None
    container = av.open(source, options=options, timeout=timeout, metadata_errors="ignore")
    # The open's options reach only the decoders FFmpeg peeks with while probing; the decoder
    # that decodes must be told itself, before it opens.
    for stream in container.streams.video:
        if stream.codec_context is not None:
            stream.codec_context.options = {"max_pixels": options["max_pixels"]}
    return container


class _Watch:
    """The checks `decode_frames` applies to each decoded frame."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.started = time.monotonic()
        self.origin: float | None = None  # the first frame's time
        self.window: float | None = None  # where the rate is counted from
        self.count = 0
        self.last = 0.0

    def check(self, width: int, height: int, pts: float) -> None:
        limits = self.limits
        if width * height > limits.max_pixels:
            raise LimitExceeded(
                "bad_dimensions",
                f"a frame of {width}x{height} pixels; at most {limits.max_pixels} in all",
            )
        if self.origin is None or self.window is None or pts < self.last:
            # The first frame, or time went back (a live source restarting its clock): the rate
            # is counted afresh; the timeline keeps its origin.
            self.origin = pts if self.origin is None else self.origin
            self.window, self.count = pts, 0
        self.last = pts
        self.count += 1
        # A second's slack: the first frames of a stream may share a timestamp.
        if self.count > limits.max_fps * (pts - self.window + 1.0):
            raise LimitExceeded(
                "bad_frame_rate",
                f"{self.count} frames in {pts - self.window:.2f} s of media time; at most "
                f"{limits.max_fps:g} per second",
            )
        if limits.max_seconds is not None and pts - self.origin > limits.max_seconds:
            raise LimitExceeded(
                "too_long", f"the video's frames go past the limit of {limits.max_seconds:g} s"
            )
        if limits.budget_s is not None and time.monotonic() - self.started > limits.budget_s:
            raise LimitExceeded(
                "decode_budget", f"decoding took longer than the limit of {limits.budget_s:g} s"
            )


def decode_frames(
    container: av.container.InputContainer,
    geometry: Geometry,
    fps: float,
    limits: Limits,
    *,
    threads: int = 2,
    epoch: int = 0,
    realtime: bool = False,
    view_height: int = 0,
    integrate: bool = False,
) -> Iterator[Frame]:
    """Frames of the first video stream, sampled to `fps` on their timestamps.

    A frame is kept when its time reaches the next due time (within half a source frame); the
    due time then advances by one step, from the due time itself, so that frames kept a little
    late (25 fps sampled to 12) do not stretch the rate, or from the frame's time after a gap of
    more than a step, so that a gap resynchronises the sampler instead of letting it keep every
    frame until it catches up. `realtime` paces a file to its timestamps, so that it can stand in
    for a camera. Every decoded frame is checked against `limits` (raising `LimitExceeded`).
    `view_height` adds each frame whole, at that height, for event evidence. `integrate` makes
    each kept frame's image the mean of it and the frames after it up to the next kept one
    (`ClipSpec.integrate`): every frame is converted then, and a frame comes out when its step
    is over.
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

    def cropped(frame: av.VideoFrame) -> np.ndarray:
        image = scaler.reformat(frame, full_w, full_h, "rgb24").to_ndarray()
        return image[top : top + geometry.crop, left : left + geometry.crop]

    due: float | None = None
    origin = 0.0  # wall-clock time of media time 0, when pacing
    pts = -source_step
    watch = _Watch(limits)
    held: Frame | None = None  # integrating: the kept frame whose step is still open
    step_images: list[np.ndarray] = []
    for frame in container.decode(stream):
        # A frame without a timestamp (e.g. the first of an RTSP session) follows the previous.
        pts = frame.time if frame.time is not None else pts + source_step
        watch.check(frame.width, frame.height, pts)
        if due is not None and pts < due - tolerance:
            if integrate:
                step_images.append(cropped(frame))
            continue
        if held is not None:
            yield _integrated(held, step_images)
        due = (due if due is not None and pts - due < step else pts) + step
        if realtime:
            origin = origin or (time.time() - pts)
            time.sleep(max(0.0, origin + pts - time.time()))
        now = time.time()
        crop = cropped(frame)
        view = None
        if view_height:
            height = min(view_height, frame.height) // 2 * 2
            width = round(frame.width * height / frame.height / 2) * 2
            view = viewer.reformat(frame, width, height, "rgb24").to_ndarray()
        if integrate:  # its image is the step's mean, made when the step is over
            held, step_images = Frame(crop, pts, now, expected, epoch, view), [crop]
        else:
            yield Frame(np.ascontiguousarray(crop), pts, now, expected, epoch, view)
    if held is not None:
        yield _integrated(held, step_images)


def _integrated(frame: Frame, images: list[np.ndarray]) -> Frame:
    """`frame` with its image exposed for the whole of its step's `images`."""
    return replace(frame, image=integrated(np.stack(images)))
