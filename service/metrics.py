"""Every Prometheus metric of the service, defined once.

Each process (api, ingest, infer, trainer, or the embedded `serve`) imports the objects it updates
from here, so a name, its labels and its buckets exist in one place and the Grafana dashboard can be
checked against them. Per-stream metrics carry the stream id in a `stream` label, never the URL.

When PROMETHEUS_MULTIPROC_DIR is set (processes that fork, e.g. uvicorn with several workers), the
client writes samples to files in that directory and `render()` aggregates all processes; gauges
then say how their per-process values combine.
"""

import atexit
import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Few buckets on purpose: every bucket is a time series per label set.
_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

# Streams (ingest).
STREAM_FRAMES_DECODED = Counter(
    "lumos_stream_frames_decoded_total", "Frames decoded per stream.", ["stream"]
)
STREAM_FRAMES_DROPPED = Counter(
    "lumos_stream_frames_dropped_total",
    "Frames or clips dropped per stream, by reason (stale, overflow, decode_error...).",
    ["stream", "reason"],
)
STREAM_CLIPS = Counter("lumos_stream_clips_total", "Clips cut per stream.", ["stream"])
STREAM_RECONNECTS = Counter(
    "lumos_stream_reconnects_total", "Reconnects of a live source.", ["stream"]
)
STREAM_UP = Gauge(
    "lumos_stream_up",
    "1 while the stream delivers frames.",
    ["stream"],
    multiprocess_mode="livemax",
)
STREAM_LUMA_MEAN = Gauge(
    "lumos_stream_luma_mean",
    "Mean luma (0-255) of the stream's latest clip.",
    ["stream"],
    multiprocess_mode="livemostrecent",
)
STREAM_NOISE_SIGMA = Gauge(
    "lumos_stream_noise_sigma",
    "Estimated noise sigma (0-255) of the stream's latest clip.",
    ["stream"],
    multiprocess_mode="livemostrecent",
)
CLIPS_GATED = Counter(
    "lumos_clips_gated_total",
    "Clips skipped by the darkness gate, by reason (too_dark, no_signal).",
    ["stream", "reason"],
)

# Pipeline (queue and inference).
QUEUE_DEPTH = Gauge(
    "lumos_queue_depth", "Clips waiting in a queue.", ["queue"], multiprocess_mode="livemax"
)
QUEUE_WAIT = Histogram(
    "lumos_queue_wait_seconds", "Time a clip waited in the queue.", buckets=_LATENCY_BUCKETS
)
INFERENCE_BATCH_SIZE = Histogram(
    "lumos_inference_batch_size", "Clips per inference batch.", buckets=_BATCH_BUCKETS
)
INFERENCE_SECONDS = Histogram(
    "lumos_inference_seconds", "Time of one batched forward pass.", buckets=_LATENCY_BUCKETS
)
CLIP_LATENCY = Histogram(
    "lumos_clip_latency_seconds",
    "End to end: clip cut (last frame) to result stored.",
    buckets=_LATENCY_BUCKETS,
)
PREDICTIONS = Counter("lumos_predictions_total", "Top-1 predictions by label.", ["label"])
EVENTS = Counter(
    "lumos_events_total", "Events opened, by camera and peak label.", ["camera", "label"]
)
NOTIFICATIONS = Counter(
    "lumos_notifications_total",
    "Event notifications by channel (webhook, mqtt) and outcome (delivered, retried, "
    "dead_letter, dropped, refused).",
    ["channel", "outcome"],
)
# Known from the start, so that a dashboard shows zeros rather than nothing before the first one.
for _channel in ("webhook", "mqtt"):
    for _outcome in ("delivered", "retried", "dead_letter", "dropped", "refused"):
        NOTIFICATIONS.labels(channel=_channel, outcome=_outcome)
MODEL_INFO = Gauge(
    "lumos_model_info",
    "1 for the model version a process serves.",
    ["version"],
    multiprocess_mode="livemax",
)

# Control plane (API and trainer).
REQUESTS = Counter("lumos_requests_total", "HTTP requests by route and status.", ["route", "code"])
REQUEST_SECONDS = Histogram(
    "lumos_request_seconds", "HTTP request duration by route.", ["route"], buckets=_LATENCY_BUCKETS
)
UPLOADS_IN_FLIGHT = Gauge(
    "lumos_uploads_in_flight",
    "Uploads an API process works on (requests and asynchronous classifications).",
    multiprocess_mode="livesum",
)
JOBS = Gauge("lumos_jobs", "Training jobs by state.", ["state"], multiprocess_mode="mostrecent")


_served: list[str] = []


def forget_stream(stream: str) -> None:
    """Drop every series of `stream`, once this process no longer ingests it: camera ids come
    and go, and a series per id ever subscribed would grow without bound. (Multi-process files
    cannot drop a series: there, a stopped stream's series stay until the process restarts.)"""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    for metric in (
        STREAM_FRAMES_DECODED,
        STREAM_FRAMES_DROPPED,
        STREAM_CLIPS,
        STREAM_RECONNECTS,
        STREAM_UP,
        STREAM_LUMA_MEAN,
        STREAM_NOISE_SIGMA,
        CLIPS_GATED,
    ):
        for labels in [k for k in metric._metrics if k[0] == stream]:  # noqa: SLF001
            metric.remove(*labels)


def set_model_version(version: str) -> None:
    """Mark `version` as the one this process serves; the previous one drops to 0.

    Zeroing rather than removing the old series keeps multi-process files consistent.
    """
    for old in _served:
        MODEL_INFO.labels(version=old).set(0)
    _served[:] = [version]
    MODEL_INFO.labels(version=version).set(1)


def _forget_live_gauges() -> None:
    """A process that exits drops out of the `live*` gauges of the other processes' scrapes."""
    multiprocess.mark_process_dead(os.getpid())


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    atexit.register(_forget_live_gauges)


class _SizedFilesCollector(multiprocess.MultiProcessCollector):
    """prometheus_client's multi-process collector, minus the files of processes that are just
    starting: a new file exists for a moment before it is sized, and reading it raises (a scrape
    that raced a worker's start answered 500)."""

    def collect(self):  # noqa: ANN201 (prometheus_client's signature)
        files = []
        for path in Path(self._path).glob("*.db"):
            try:
                if path.stat().st_size >= 8:
                    files.append(str(path))
            except FileNotFoundError:  # its process exited meanwhile
                continue
        return self.merge(files, accumulate=True)


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of all processes in multi-process mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _SizedFilesCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
