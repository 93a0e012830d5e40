"""Every setting of the service, in one class; each field `name` is also the env var LUMOS_NAME.

One process (`lumos serve`) or several (`lumos api|ingest|infer`) read the same settings, so a
deployment is described by environment variables alone. Defaults run the embedded service on this
machine; tests shorten the timing settings (backoff, leases, claim idle) to keep runs short.
"""

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.backoff import backoff_delays
from service.paths import DEMO_MODEL, user_cache
from service.setting_types import Backoff, Endpoints, ModelDir, Networks, Sentinels, sentinel_list


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
    model_dir: ModelDir = Field(
        DEMO_MODEL,
        validate_default=True,
        description="The model artifact served while no other version was activated. The default "
        "is the bundled demo model, found from any working directory (the checkout's, or an "
        "installed wheel's `<prefix>/share/lumos/demo`).",
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
        default_factory=lambda: user_cache() / "lumos",
        description="Derived files kept across restarts: ONNX and INT8 forms of served models, "
        "and each model's backend choice on this machine. Default: $XDG_CACHE_HOME/lumos "
        "(~/.cache/lumos).",
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

    # Redis that fails over: Sentinels name the primary, WAIT holds accepted uploads.
    redis_sentinels: Sentinels = Field(
        None,
        description="Comma-separated HOST:PORT of Redis Sentinels. Set, every connection asks "
        "them for the primary of `redis_master_name` (again after a failover), and "
        "LUMOS_REDIS_URL, if also set, gives only the database number and credentials.",
    )
    redis_master_name: str = Field(
        "lumos", description="The master name the Sentinels monitor (`sentinel monitor NAME`)."
    )
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        description="Replicas that must hold each queued upload clip (Redis WAIT) before its "
        "upload counts as accepted, so that a failover cannot lose it; 0 = asynchronous "
        "replication only.",
    )
    redis_wait_ms: int = Field(
        1000, ge=1, description="How long WAIT waits for those replicas before it gives up."
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
    reconnect_backoff: Backoff = Field(
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
    backend: Literal[
        "auto", "fp32", "bf16", "onnx", "openvino", "openvino-bf16", "openvino-int8", "cuda"
    ] = Field(
        "auto",
        description="Inference backend; auto measures the candidates once per model and machine "
        "and remembers the choice in cache_dir.",
    )
    accept_agreement: float = Field(
        0.99,
        ge=0,
        le=1,
        description="A backend serves only if its top-1 label matches fp32's on at least this "
        "fraction of the model's agreement clips.",
    )
    accept_prob_change: float = Field(
        0.02,
        ge=0,
        description="A backend serves only if the mean over the agreement clips of its largest "
        "change of any class probability (against fp32) is at most this.",
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

    # Security: where URLs may point, what a decoded frame may be, slow and greedy clients.
    camera_networks: Networks = Field(
        "private,public",
        description="Networks camera URLs may resolve to (CIDRs, comma-separated; `private` = "
        "RFC 1918, CGNAT and IPv6 ULA ranges, `public` = any other address). Link-local and "
        "metadata addresses and the service's own Redis, API and metrics listeners are refused "
        "whatever this says; loopback only when a loopback network is listed (127.0.0.1/32).",
    )
    webhook_networks: Networks = Field(
        "private,public",
        description="Networks webhook URLs may resolve to; same form and exceptions as "
        "`camera_networks`.",
    )
    denied_endpoints: Endpoints = Field(
        "",
        description="HOST:PORT entries camera and webhook URLs may never reach, besides Redis "
        "and the service's own listeners (e.g. prometheus:9090).",
    )
    frame_max_pixels: int = Field(
        8192 * 4320,
        ge=256,
        description="Largest frame (width x height) decoded, checked on every frame of uploads "
        "and cameras; the decoder refuses a bigger one before allocating it.",
    )
    frame_max_fps: float = Field(
        1000.0, gt=0, description="Frames per second of media time a source may deliver at most."
    )
    upload_decode_budget_s: float = Field(
        120.0, gt=0, description="Wall-clock time an upload's decoding may take at most."
    )
    body_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request body (an upload) that sends nothing for this long is answered "
        "408 and its connection closed.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A connection that has not sent its request headers by then is closed.",
    )
    upload_max_in_flight_per_key: int = Field(
        4,
        ge=1,
        description="Uploads one API key (or, without keys, one client address) may have in "
        "progress at once; below `upload_max_in_flight`, so that one client cannot take them all.",
    )
    sse_max_connections: int = Field(
        64,
        ge=1,
        description="Event streams (/v1/streams/{id}/events) open at once per API process.",
    )
    cameras_max: int = Field(256, ge=1, description="Cameras that may be subscribed at once.")
    redis_password: SecretStr = Field(
        SecretStr(""),
        description="Redis AUTH password, kept apart from `redis_url` so that it can come from a "
        "Secret (added to the URL when the URL has none). For TLS use a rediss:// URL, with "
        "?ssl_ca_certs=/path/ca.pem to check the server's certificate.",
    )
    trusted_hosts: str = Field(
        "*",
        description="Host header values the API answers (comma-separated; `*.example.com` "
        "allowed); others get 400. `*` answers any (then DNS rebinding can reach open reads).",
    )

    @model_validator(mode="after")
    def _redis_auth(self) -> "Settings":
        password = self.redis_password.get_secret_value()
        if password and self.redis_url:
            parts = urlsplit(self.redis_url)
            if parts.password is None:
                netloc = f"{parts.username or ''}:{quote(password, safe='')}@{parts.netloc}"
                self.redis_url = urlunsplit(parts._replace(netloc=netloc))
        return self

    def api_key_list(self) -> list[str]:
        return [key.strip() for key in self.api_keys.get_secret_value().split(",") if key.strip()]

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return sentinel_list(self.redis_sentinels or "")

    def redis_enabled(self) -> bool:
        """Whether the parts share work through Redis (a URL or Sentinels), not in-process."""
        return self.redis_url is not None or self.redis_sentinels is not None

    def backoff_delays(self) -> Iterator[float]:
        """The reconnect delays in order, forever (the last step repeats)."""
        return backoff_delays(self.reconnect_backoff)
