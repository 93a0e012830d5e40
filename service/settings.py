"""Every setting of the service, in one class; each field `name` is also the env var LUMOS_NAME.

One process (`lumos serve`) or several (`lumos api|ingest|infer`) read the same settings, so a
deployment is described by environment variables alone. Defaults run the embedded service on this
machine; tests shorten the timing settings (backoff, leases, claim idle) to keep runs short.
"""

import os
import re
import socket
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_BACKOFF_STEP = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:x\s*(\d+))?\s*$")


def parse_backoff(schedule: str) -> list[tuple[float, int | None]]:
    """ "1x5,5x5,10x10,60" -> [(1, 5), (5, 5), (10, 10), (60, None)]: delay x attempts, the last
    step repeating forever."""
    steps: list[tuple[float, int | None]] = []
    parts = schedule.split(",")
    for i, part in enumerate(parts):
        match = _BACKOFF_STEP.match(part)
        if not match:
            raise ValueError(f"backoff step {part!r} is not DELAY or DELAYxCOUNT")
        count = int(match[2]) if match[2] else None
        if count is None and i < len(parts) - 1:
            raise ValueError(f"only the last backoff step may omit its count, not {part!r}")
        steps.append((float(match[1]), count))
    return steps


class Settings(BaseSettings):
    """The service's configuration; see each field's description (also in `lumos serve --help`)."""

    model_config = SettingsConfigDict(env_prefix="LUMOS_", extra="ignore")

    # Deployment.
    redis_url: str | None = Field(
        None,
        description="Redis for a multi-process deployment (queues, results, cameras, active "
        "model). Unset: everything runs in one process with in-memory queues.",
    )
    redis_connections: int = Field(
        8,
        ge=3,
        description="Redis connections each process opens at start and keeps; commands wait "
        "for a free one. A fixed number, so that replicas cannot exhaust Redis's maxclients.",
    )
    host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the HTTP API listens on.")
    model_dir: Path = Field(
        Path("artifacts/demo"),
        description="The model artifact served while no other version was activated.",
    )
    model_root: Path = Field(
        Path("runs/models"), description="Directory of registered model versions."
    )
    artifacts_root: Path = Field(
        Path("artifacts"),
        description="Bundled artifacts and backbone weights: with the model root, the only "
        "directories a training job may name files under (`pretrained`).",
    )
    cache_dir: Path = Field(
        Path("runs/cache"), description="Derived files, e.g. ONNX exports of served models."
    )
    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="This process's name as a queue consumer and camera-lease holder.",
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="`lumos ingest`, `lumos infer` and `lumos trainer` serve /metrics, /healthz "
        "and /readyz on this port; 0 = off.",
    )

    # Ingest.
    clip_stride: int | None = Field(
        None, ge=1, description="Frames between the starts of consecutive clips; unset = T."
    )
    decode_threads: int = Field(2, ge=1, description="FFmpeg decoder threads per stream.")
    upload_decoders: int = Field(
        2, ge=1, description="Uploaded files decoded at the same time (one thread each)."
    )
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport.")
    open_timeout_s: float = Field(10.0, gt=0, description="Give up opening a live source after.")
    stall_timeout_s: float = Field(
        10.0, gt=0, description="Stall watchdog: reopen a live source after this long frameless."
    )
    reconnect_backoff: str = Field(
        "1x5,5x5,10x10,60",
        description="Delays between reconnect attempts: DELAYxCOUNT steps, comma-separated; the "
        "last step repeats.",
    )
    frame_buffer: int = Field(
        64, ge=1, description="Sampled frames a live stream buffers; the oldest drop beyond."
    )
    staleness_s: float = Field(
        5.0, gt=0, description="Live frames and clips older than this are dropped, counted."
    )
    gate_min_luma: float = Field(
        0.0, ge=0, le=255, description="Skip clips whose mean luma (0-255) is below; 0 = off."
    )
    gate_min_range: float = Field(
        0.0, ge=0, le=255, description="Skip clips whose p95-p5 luma spread is below (no signal)."
    )

    # Cameras.
    lease_ms: int = Field(
        10_000, ge=100, description="A camera's owner must renew its lease within this."
    )

    # Queues and results.
    queue_files_max: int = Field(
        256, ge=1, description="Upload clips queued at most; producers wait beyond (no drops)."
    )
    queue_live_max: int = Field(
        64, ge=1, description="Live clips queued at most; the oldest drop beyond (counted)."
    )
    claim_idle_ms: int = Field(
        30_000,
        ge=100,
        description="Clips unacknowledged this long are reclaimed from their worker.",
    )
    result_ttl_s: int = Field(86_400, ge=1, description="Results are kept this long.")

    # Inference.
    batch_max: int = Field(8, ge=1, description="Clips per batch at most.")
    batch_wait_ms: float = Field(
        10.0, ge=0, description="How long a batch waits to fill after its first clip."
    )
    backend: Literal["auto", "fp32", "bf16", "onnx", "openvino", "openvino-bf16", "cuda"] = Field(
        "auto", description="Inference backend; auto measures the candidates at start-up."
    )
    threads: int = Field(0, ge=0, description="CPU inference threads; 0 = the library default.")
    cuda_streams: bool = Field(
        True,
        description="On a GPU, upload the next batch on a copy stream while this one computes; "
        "off runs every batch on the default stream, one at a time.",
    )
    top_k: int = Field(5, ge=1, description="Labels reported per clip.")
    model_poll_s: float = Field(
        2.0, gt=0, description="How often workers look for a newly activated model."
    )
    webhook_timeout_s: float = Field(
        2.0,
        gt=0,
        description="A POST to a camera's webhook gives up after this long (then retried).",
    )

    # Events and notifications.
    event_dir: Path = Field(
        Path("runs/events"),
        description="Event evidence (clips, key frames); shared by ingest workers and the API.",
    )
    event_max_age_s: float = Field(
        7 * 86_400, gt=0, description="Events and their evidence are kept this long."
    )
    event_max_bytes: int = Field(
        2 * 1024**3, ge=0, description="Evidence kept at most; the oldest goes first beyond."
    )
    event_clip_max_s: float = Field(
        30.0,
        gt=0,
        description="An event's evidence clip keeps at most its last this many seconds. Each "
        "camera with rules holds this much of its frames (30 s at 12 fps and 320 x 240: 83 MiB).",
    )
    event_view_height: int = Field(
        240, ge=16, le=2160, description="Height of evidence frames (source height if lower)."
    )
    event_enhanced: bool = Field(
        True, description="Also write a Retinex-enhanced evidence clip and key frame."
    )
    event_resume_s: float = Field(
        30.0,
        gt=0,
        description="An event its worker left open is continued by the camera's next owner "
        "within this; later, it is closed at its last clip.",
    )
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="Key of the HMAC-SHA256 signature on event webhooks (X-Lumos-Signature). "
        "Unset: webhooks go unsigned.",
    )
    webhook_attempts: int = Field(5, ge=1, le=20, description="Tries per event webhook POST.")
    webhook_backoff_s: float = Field(
        0.5, ge=0, description="Wait before the first retry; it doubles with each one."
    )
    mqtt_url: str | None = Field(
        None,
        description="MQTT broker (mqtt://[user:pass@]host[:port], mqtts://) events and camera "
        "states are published to. Unset: no MQTT.",
    )
    mqtt_prefix: str = Field(
        "lumos", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", description="MQTT topic prefix."
    )

    # Control plane: API access, uploads, training jobs.
    api_keys: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated API keys (X-API-Key or Authorization: Bearer). Unset: the "
        "API is open, and says so in its log and /readyz.",
    )
    protect_reads: bool = Field(
        False, description="Also require a key for GET endpoints (health and /metrics stay open)."
    )
    upload_max_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="Largest accepted upload; reading stops past it."
    )
    upload_max_s: float = Field(600.0, gt=0, description="Longest accepted upload, in seconds.")
    upload_sync_max_s: float = Field(
        30.0,
        ge=0,
        description="Uploads up to this long are answered in the request; longer ones get 202 "
        "and a job id to poll.",
    )
    upload_min_frames: int = Field(
        8, ge=1, description="Frames an upload must decode at least to be accepted."
    )
    upload_max_in_flight: int = Field(
        16,
        ge=1,
        description="Uploads one API process works on at once (receiving, vetting, decoding, "
        "awaiting results; async ones included); more are refused with 503, so that the latency "
        "of those admitted stays bounded.",
    )
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with 503 when overloaded.")
    data_root: Path = Field(
        Path("data"), description="Training data sets: each directory below is one, by name."
    )
    train_configs: Path = Field(
        Path("configs/cpu-small"), description="Stage configs (<stage>.yaml) training jobs use."
    )
    runs_dir: Path = Field(
        Path("runs/jobs"), description="Where training jobs write logs, checkpoints, artifacts."
    )
    trainer_concurrency: int = Field(
        1, ge=1, description="Training jobs one trainer runs at the same time."
    )
    job_lease_s: float = Field(
        30.0,
        gt=0,
        description="A trainer renews the lease on each job it runs within this; a running job "
        "whose lease runs out (its trainer died) is marked failed.",
    )

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, url: str | None) -> str | None:
        if url and (not url.startswith(("mqtt://", "mqtts://")) or not urlsplit(url).hostname):
            raise ValueError("mqtt_url must be mqtt://host[:port] or mqtts://host[:port]")
        return url

    def api_key_list(self) -> list[str]:
        return [key.strip() for key in self.api_keys.get_secret_value().split(",") if key.strip()]

    @field_validator("reconnect_backoff")
    @classmethod
    def _valid_backoff(cls, value: str) -> str:
        parse_backoff(value)
        return value

    def backoff_delays(self) -> Iterator[float]:
        """The reconnect delays in order, forever (the last step repeats)."""
        steps = parse_backoff(self.reconnect_backoff)
        for delay, count in steps:
            yield from repeat(delay) if count is None else repeat(delay, count)
        yield from repeat(steps[-1][0])
