"""Training jobs: their records, and the trainer that runs them.

The API validates a request (stage, data set inside the data root, config overrides against the
stage's schema) and stores a queued record; a trainer (`lumos trainer`, or a thread of the embedded
`lumos serve`) takes queued jobs, at most N at a time, and runs each as its own `lumos train`
subprocess in a new process group, so a cancel can stop the whole tree and a crash of the training
code cannot take the trainer down. While a job runs the trainer copies its progress, latest metrics
and log tail into the record; on success the student artifact it wrote is registered as a model
version named after the job.

Records live in Redis when the service runs as separate processes (`lumos:job:<id>` JSON, a
created-time index, a FIFO of queued ids, and a cancel flag per job kept apart from the record so
the trainer's updates never overwrite a cancel), or in this process for the embedded service.

A running job's trainer holds a lease on it (`lumos:job:<id>:lease`, renewed on every tick). A
trainer killed outright (SIGKILL, OOM, its node lost) cannot say its jobs stopped, so whoever next
looks at the jobs (another trainer, or the API listing them) marks a running job whose lease ran
out as failed, naming the trainer, rather than leaving it "running" forever. Failed, not queued
again: the dead trainer's `lumos train` process may outlive it (it has its own process group) and
still write into the job's run directory, where a second run would collide with it. A trainer
that was only cut off for longer than the lease (Redis away) takes the lease and the record back
at its next tick, so the job ends in the state its run ends in.
"""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from redis import Redis

from service.connections import thread_client
from service.metrics import JOBS
from service.models import ModelRegistry, RegistryError
from service.settings import Settings

log = logging.getLogger(__name__)

Stage = Literal["teacher", "ssl", "distill", "eval", "pipeline"]
_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_LOG_TAIL_LINES = 40
_KILL_GRACE_S = 5.0


class JobState(StrEnum):
    """queued -> running -> succeeded, failed or cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobError(Exception):
    """A request the API refuses (bad data set, bad overrides, unknown job), with a reason code."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class JobRequest(BaseModel):
    """A training job to run: a stage of the recipe on a data set, with checked overrides."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "stage": "pipeline",
                    "dataset": "synth",
                    "overrides": {"all.optim.epochs": 1},
                    "activate": True,
                }
            ]
        },
    )

    stage: Stage = Field(
        description="`pipeline` (teacher, ssl, distill, eval), one of those stages, or `eval`."
    )
    dataset: str = Field(description="A data set's directory name under the data root.")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Config values by dotted key (e.g. `optim.epochs: 1`), checked against the "
        "stage's schema before the job is queued.",
    )
    model: str | None = Field(
        None, description="Model version to evaluate (stage `eval` only; default: the active one)."
    )
    activate: bool = Field(False, description="Activate the model version the job registers.")


class Job(JobRequest):
    """A training job's record: what was asked, where it is, and what it produced."""

    id: str = Field(description="The job's id.")
    state: JobState = Field(JobState.QUEUED, description="Where the job is in its life.")
    created: datetime = Field(
        default_factory=lambda: datetime.now(UTC), description="When it was submitted."
    )
    started: datetime | None = Field(None, description="When a trainer started it.")
    finished: datetime | None = Field(None, description="When it ended, however it ended.")
    progress: float = Field(0.0, description="Fraction of the job done, 0 to 1.")
    step: str | None = Field(None, description="What runs now, e.g. `ssl epoch 2/3`.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Latest metrics reported.")
    log_tail: list[str] = Field(
        default_factory=list, description="The last lines of the job's log."
    )
    error: str | None = Field(None, description="Why it failed, in words.")
    model_version: str | None = Field(None, description="The model version the job registered.")
    worker: str | None = Field(None, description="The trainer that runs or ran the job.")
    cancel_requested: bool = Field(False, description="A cancel was asked for.")


class JobStore(Protocol):
    def add(self, job: Job) -> None:
        """Store a new queued job and put it on the queue."""

    def get(self, job_id: str) -> Job | None: ...

    def list(self) -> list[Job]:
        """All jobs, newest first."""

    def save(self, job: Job) -> None: ...

    def take(self) -> Job | None:
        """The oldest queued job, removed from the queue; None when there is none."""

    def dequeue(self, job_id: str) -> bool:
        """Remove a job from the queue; False when a trainer already took it."""

    def request_cancel(self, job_id: str) -> None: ...

    def cancel_requested(self, job_id: str) -> bool: ...

    def hold(self, job_id: str, lease_s: float) -> None:
        """Take or renew the lease on a running job for `lease_s` seconds."""

    def held(self, job_ids: set[str]) -> set[str]:
        """Those of `job_ids` whose lease is still held."""


class MemoryJobStore:
    """Job records of the embedded service."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._queue: deque[str] = deque()
        self._cancel: set[str] = set()
        self._leases: dict[str, float] = {}  # job id -> monotonic expiry
        self._lock = threading.Lock()

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job.model_copy(deep=True)
            self._queue.append(job.id)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            return job.model_copy(deep=True, update={"cancel_requested": job_id in self._cancel})

    def list(self) -> list[Job]:
        with self._lock:
            ids = list(self._jobs)
        jobs = [job for job in map(self.get, ids) if job is not None]
        return sorted(jobs, key=lambda j: j.created, reverse=True)

    def save(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job.model_copy(deep=True)

    def take(self) -> Job | None:
        with self._lock:
            job_id = self._queue.popleft() if self._queue else None
        return self.get(job_id) if job_id else None

    def dequeue(self, job_id: str) -> bool:
        with self._lock:
            if job_id in self._queue:
                self._queue.remove(job_id)
                return True
            return False

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancel.add(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancel

    def hold(self, job_id: str, lease_s: float) -> None:
        with self._lock:
            self._leases[job_id] = time.monotonic() + lease_s

    def held(self, job_ids: set[str]) -> set[str]:
        now = time.monotonic()
        with self._lock:
            return {job_id for job_id in job_ids if self._leases.get(job_id, 0.0) > now}


class RedisJobStore:
    """Job records shared by `lumos api` replicas and `lumos trainer` processes."""

    def __init__(self, redis: Redis, prefix: str = "lumos") -> None:
        self._redis = redis
        self._prefix = prefix
        self._index = f"{prefix}:jobs"
        self._queue = f"{prefix}:jobs:queue"

    def _key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}"

    def _read(self, ids: list[str]) -> list[Job]:
        """The records of `ids` that exist, with their cancel flags, in one round trip."""
        if not ids:
            return []
        keys = [key for job_id in ids for key in (self._key(job_id), self._key(job_id) + ":cancel")]
        values = self._redis.mget(keys)
        return [
            Job.model_validate_json(raw).model_copy(update={"cancel_requested": bool(cancel)})
            for raw, cancel in zip(values[::2], values[1::2], strict=True)
            if raw is not None
        ]

    def add(self, job: Job) -> None:
        pipe = self._redis.pipeline()
        pipe.set(self._key(job.id), job.model_dump_json())
        pipe.zadd(self._index, {job.id: job.created.timestamp()})
        pipe.rpush(self._queue, job.id)
        pipe.execute()

    def get(self, job_id: str) -> Job | None:
        jobs = self._read([job_id])
        return jobs[0] if jobs else None

    def list(self) -> list[Job]:
        return self._read([i.decode() for i in self._redis.zrevrange(self._index, 0, -1)])

    def save(self, job: Job) -> None:
        self._redis.set(self._key(job.id), job.model_dump_json())

    def take(self) -> Job | None:
        job_id = self._redis.lpop(self._queue)
        return None if job_id is None else self.get(job_id.decode())

    def dequeue(self, job_id: str) -> bool:
        return bool(self._redis.lrem(self._queue, 0, job_id))

    def request_cancel(self, job_id: str) -> None:
        self._redis.set(self._key(job_id) + ":cancel", "1")

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self._redis.exists(self._key(job_id) + ":cancel"))

    def hold(self, job_id: str, lease_s: float) -> None:
        self._redis.set(self._key(job_id) + ":lease", "1", px=max(1, round(lease_s * 1000)))

    def held(self, job_ids: set[str]) -> set[str]:
        if not job_ids:
            return set()
        ids = sorted(job_ids)
        leases = self._redis.mget([self._key(job_id) + ":lease" for job_id in ids])
        return {job_id for job_id, lease in zip(ids, leases, strict=True) if lease is not None}


def count_states(store: JobStore) -> dict[str, int]:
    """Jobs per state (zeros included); also sets the `lumos_jobs` gauge to it."""
    counts = Counter(job.state.value for job in store.list())
    result = {state.value: counts.get(state.value, 0) for state in JobState}
    for state, count in result.items():
        JOBS.labels(state=state).set(count)
    return result


def reap(store: JobStore, jobs: list[Job]) -> list[Job]:
    """`jobs`, each running one whose lease ran out marked failed (and saved): its trainer died
    without a word. Called wherever jobs are read, so no single process has to survive to do it."""
    running = {job.id for job in jobs if job.state == JobState.RUNNING}
    lapsed = running - store.held(running)
    reaped = []
    for job in jobs:
        if job.id in lapsed:
            error = f"trainer died: {job.worker or 'an unnamed trainer'} stopped renewing its lease"
            now = datetime.now(UTC)
            update = {"state": JobState.FAILED, "finished": now, "step": None, "error": error}
            job = job.model_copy(update=update)
            store.save(job)
            log.warning("job %s failed: %s", job.id, error)
        reaped.append(job)
    return reaped


def cancel(store: JobStore, job_id: str) -> Job:
    """Cancel a queued job at once; flag a running one for its trainer to stop."""
    job = store.get(job_id)
    if job is None:
        raise JobError(404, "unknown_job", f"no job {job_id!r}")
    if job.state in FINAL_STATES:
        raise JobError(409, "job_finished", f"job {job_id} is already {job.state}")
    store.request_cancel(job_id)
    if job.state == JobState.QUEUED and store.dequeue(job_id):
        now = datetime.now(UTC)
        job = job.model_copy(update={"state": JobState.CANCELLED, "finished": now})
        store.save(job)
    return store.get(job_id) or job


def resolve_dataset(data_root: Path, name: str) -> Path:
    """The data set directory `name` under the data root; nothing outside it is ever named."""
    if not _DATASET.match(name):
        raise JobError(422, "invalid_dataset", f"{name!r} is not a data set name")
    root = data_root.resolve()
    path = (root / name).resolve()  # resolves symlinks too: a link out of the root is refused
    if not path.is_relative_to(root) or path == root:
        raise JobError(422, "dataset_outside_root", f"data set {name!r} is outside the data root")
    if not path.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise JobError(
            404, "unknown_dataset", f"no data set {name!r}; the data root holds {known or 'none'}"
        )
    return path


class _Run:
    """One job's subprocess and what the trainer knows about it."""

    def __init__(self, job: Job, process: subprocess.Popen, directory: Path) -> None:
        self.job = job
        self.process = process
        self.directory = directory
        self.term_sent: float | None = None


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> list[str]:
    """The last lines of a log, with tqdm's carriage-return redraws collapsed to the latest."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 16384))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    rows = [line.rsplit("\r", 1)[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return [row for row in rows if row][-lines:]


def _flat(report: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"eval": {"top1": 0.9}} -> {"eval.top1": 0.9}: numbers and strings only, for the record."""
    flat: dict[str, Any] = {}
    for key, value in report.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, int | float | str | bool) or value is None:
            flat[f"{prefix}{key}"] = value
    return flat


class Trainer:
    """Takes queued jobs and runs at most `concurrency` of them at once, each in a subprocess.

    `worker` names this trainer in the records of its jobs; it renews their leases on every tick,
    each for `lease_s` seconds.
    """

    def __init__(
        self,
        store: JobStore,
        registry: ModelRegistry,
        planner: "JobPlanner",
        runs_dir: Path,
        worker: str,
        lease_s: float,
        concurrency: int = 1,
        poll_s: float = 0.5,
    ) -> None:
        self.store = store
        self.registry = registry
        self.planner = planner
        self.runs_dir = runs_dir
        self.worker = worker
        self.lease_s = lease_s
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.running: dict[str, _Run] = {}
        self.ticked = time.monotonic()
        """When the loop last came round: a probe's sign of life."""
        self.failure: str | None = "starting"
        """Why the last tick failed (e.g. Redis out of reach); None when it worked."""

    def run(self, stop: threading.Event) -> None:
        """Serve jobs until `stop` is set; running jobs are then stopped and queued again."""
        log.info("trainer: up to %d job(s) at a time, runs in %s", self.concurrency, self.runs_dir)
        while not stop.is_set():
            try:
                self.tick()
                self.failure = None
            except Exception as exc:  # a store hiccup (e.g. Redis restarting) must not end it
                log.exception("trainer: tick failed; retrying")
                self.failure = f"{type(exc).__name__}: {exc}"
            self.ticked = time.monotonic()
            stop.wait(self.poll_s)
        self.shutdown()

    def liveness(self) -> dict[str, dict[str, Any]]:
        """The loop came round within a lease time (beyond it, its jobs' leases would lapse)."""
        idle = time.monotonic() - self.ticked
        if idle > self.lease_s:
            return {"loop": {"ok": False, "error": f"the trainer loop is stuck ({idle:.0f} s)"}}
        return {"loop": {"ok": True}}

    def readiness(self) -> dict[str, dict[str, Any]]:
        """Alive, and its last tick reached the job store."""
        store = {"ok": True} if self.failure is None else {"ok": False, "error": self.failure}
        return {**self.liveness(), "store": store}

    def tick(self) -> None:
        for run in list(self.running.values()):
            self._follow(run)
        while len(self.running) < self.concurrency:
            job = self.store.take()
            if job is None:
                break
            self._start(job)
        reap(self.store, self.store.list())  # jobs of trainers that died
        count_states(self.store)

    def shutdown(self) -> None:
        """Stop every running job and put it back on the queue: its stage resumes from its
        last checkpoint when a trainer takes it again."""
        for run in list(self.running.values()):
            self._kill(run)
            run.process.wait()
            job = run.job.model_copy(update={"state": JobState.QUEUED, "step": "requeued"})
            self.store.add(job)
            log.info("trainer: job %s stopped and queued again", job.id)
        self.running.clear()

    def _start(self, job: Job) -> None:
        if self.store.cancel_requested(job.id):
            self._finish(job, JobState.CANCELLED)
            return
        directory = self.runs_dir / job.id
        directory.mkdir(parents=True, exist_ok=True)
        try:
            command = self.planner.command(job, directory)
        except JobError as exc:  # e.g. the data set was removed since the job was queued
            self._finish(job.model_copy(update={"error": str(exc)}), JobState.FAILED)
            return
        (directory / "command.json").write_text(json.dumps(command))
        # stderr (logging, progress bars) is the job's log; stdout is the command's JSON report.
        with (
            (directory / "job.log").open("ab") as log_file,
            (directory / "stdout.json").open("wb") as report,
        ):
            process = subprocess.Popen(
                command,
                stdout=report,
                stderr=log_file,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: a cancel stops its workers too
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        job = job.model_copy(
            update={
                "state": JobState.RUNNING,
                "started": datetime.now(UTC),
                "step": "starting",
                "worker": self.worker,
            }
        )
        self.store.hold(job.id, self.lease_s)  # before the record says running: never unleased
        self.store.save(job)
        self.running[job.id] = _Run(job, process, directory)
        log.info("trainer: job %s (%s) started, pid %d", job.id, job.stage, process.pid)

    def _follow(self, run: _Run) -> None:
        progress = self.planner.progress(run.job, run.directory)
        job = run.job.model_copy(update={"log_tail": _tail(run.directory / "job.log"), **progress})
        cancel = self.store.cancel_requested(job.id)
        if cancel:
            self._kill(run)
        code = run.process.poll()
        if code is None:
            run.job = job
            self.store.hold(job.id, self.lease_s)
            self.store.save(job)
            return
        del self.running[job.id]
        if cancel:
            self._finish(job, JobState.CANCELLED)
        elif code != 0:
            error = job.log_tail[-1] if job.log_tail else f"exited with status {code}"
            self._finish(job.model_copy(update={"error": error}), JobState.FAILED)
        else:
            self._succeed(job, run.directory)

    def _kill(self, run: _Run) -> None:
        """SIGTERM the job's process group, then SIGKILL once the grace time is over."""
        now = time.monotonic()
        if run.term_sent is None:
            run.term_sent = now
            sig = signal.SIGTERM
        elif now - run.term_sent > _KILL_GRACE_S:
            sig = signal.SIGKILL
        else:
            return
        try:
            os.killpg(run.process.pid, sig)
        except ProcessLookupError:
            pass

    def _succeed(self, job: Job, directory: Path) -> None:
        artifact, report = self.planner.outcome(job, directory)
        job = job.model_copy(update={"metrics": {**job.metrics, **_flat(report)}})
        if artifact is not None:
            try:
                entry = self.registry.register(artifact, version=f"job-{job.id}")
                if job.activate:
                    self.registry.activate(entry.version)
            except RegistryError as exc:
                self._finish(job.model_copy(update={"error": str(exc)}), JobState.FAILED)
                return
            metrics = {**job.metrics, **entry.manifest.metrics}
            job = job.model_copy(update={"model_version": entry.version, "metrics": metrics})
            log.info("trainer: job %s registered model version %s", job.id, entry.version)
        self._finish(job.model_copy(update={"progress": 1.0}), JobState.SUCCEEDED)

    def _finish(self, job: Job, state: JobState) -> None:
        job = job.model_copy(update={"state": state, "finished": datetime.now(UTC), "step": None})
        self.store.save(job)
        log.info("trainer: job %s %s%s", job.id, state, f": {job.error}" if job.error else "")


class EvalOptions(BaseModel):
    """The `lumos train eval` options a job may set (its overrides)."""

    model_config = ConfigDict(extra="forbid")

    split: int | Literal["all"] = 1
    clips: int = Field(1, ge=1, le=32)
    crops: Literal[1, 3, 10] = 1


# Config keys that name files or directories: a job never chooses where the trainer reads or
# writes, only the trainer does (inside the job's run directory).
_RESERVED = frozenset({"run.output_dir", "data.root", "teacher", "init", "export_dir", "version"})
_FROM_SCRATCH = frozenset({"teacher=null", "init=null"})
"""Reserved keys a request may still clear: no file named, nothing of the server's exposed."""
_RECIPES = ("teacher", "ssl", "distill")


def _as_sets(overrides: dict[str, Any]) -> list[str]:
    """{"optim.epochs": 1} -> ["optim.epochs=1"]: JSON is a YAML subset, so values keep types."""
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]


class JobPlanner:
    """What a job means as a `lumos train` command, and how to read its run directory.

    This is the one place that knows the training CLI's options and file layout, so the API can
    check a request before queueing it and the trainer can run and follow it. Overrides are
    checked by the training package's own config assembly (`training.pipeline.stage_config`),
    the code the job will run, so the API accepts exactly what the trainer would.
    """

    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.data_root = settings.data_root
        self.config_dir = settings.train_configs
        self.registry = registry
        self._epochs: dict[str, dict[str, int]] = {}

    def validate(self, request: JobRequest) -> None:
        """Raise JobError unless the job can start: data set, model and every override."""
        resolve_dataset(self.data_root, request.dataset)
        if request.model is not None and request.stage != "eval":
            raise JobError(422, "invalid_request", "`model` names the version an eval job scores")
        if request.stage == "eval":
            self._eval_model(request)
            try:
                EvalOptions.model_validate(request.overrides)
            except ValueError as exc:
                raise JobError(422, "invalid_overrides", str(exc)) from exc
        else:
            self._stage_configs(request)

    @staticmethod
    def _pipeline_sets(request: JobRequest) -> list[str]:
        """The overrides as the pipeline's `STAGE.key=value` items (a single stage's keys get
        that stage's prefix)."""
        prefix = "" if request.stage == "pipeline" else f"{request.stage}."
        return [f"{prefix}{item}" for item in _as_sets(request.overrides)]

    def _stage_configs(self, request: JobRequest) -> dict[str, Any]:
        """Each recipe's validated config, as the job will assemble it."""
        from training import config as schemas  # schemas and config assembly; no training runs
        from training.pipeline import stage_config, stage_overrides

        kinds = {
            "teacher": schemas.TeacherConfig,
            "ssl": schemas.SSLConfig,
            "distill": schemas.DistillConfig,
        }
        stages = _RECIPES if request.stage == "pipeline" else (request.stage,)
        sets = self._pipeline_sets(request)
        configs = {}
        try:
            for stage in stages:
                reserved = _RESERVED & {
                    item.partition("=")[0]
                    for item in stage_overrides(sets, stage)
                    if item not in _FROM_SCRATCH
                }
                if reserved:
                    raise JobError(
                        422, "reserved_override", f"{sorted(reserved)} are the trainer's"
                    )
                path = self.config_dir / f"{stage}.yaml"
                if not path.is_file():
                    raise JobError(500, "missing_config", f"no config {path}")
                data = self.data_root / request.dataset
                configs[stage] = stage_config(
                    kinds[stage], stage, self.config_dir, data, Path("."), sets
                )
                # A pipeline wires each stage's `init` and `teacher` to the one before it.
                wired = request.stage == "pipeline"
                fields = ("pretrained",) if wired else ("pretrained", "init", "teacher")
                missing = [
                    f"{field}={path}"
                    for field in fields
                    if (path := getattr(configs[stage], field, None)) and not Path(path).is_file()
                ]
                if missing:
                    raise JobError(
                        422,
                        "missing_checkpoint",
                        f"{stage}: no such checkpoint: {', '.join(missing)}; "
                        "set it to null to start from scratch",
                    )
        except ValueError as exc:  # pydantic's ValidationError, and malformed keys
            raise JobError(422, "invalid_overrides", str(exc)) from exc
        return configs

    def _eval_model(self, request: JobRequest) -> Path:
        try:
            entry = self.registry.get(request.model) if request.model else self.registry.active()
        except RegistryError as exc:
            raise JobError(404, exc.reason, str(exc)) from exc
        if entry is None:
            raise JobError(409, "no_active_model", "no model is active; name one in `model`")
        return entry.path

    def command(self, job: Job, directory: Path) -> list[str]:
        """The job's `lumos train` command line; everything it writes goes under `directory`."""
        data = resolve_dataset(self.data_root, job.dataset)
        lumos = [sys.executable, "-m", "service.cli", "train", job.stage]
        if job.stage == "eval":
            options = EvalOptions.model_validate(job.overrides)
            return [
                *lumos,
                *("--artifact", str(self._eval_model(job)), "--data", str(data), "--json"),
                *("--split", str(options.split), "--clips", str(options.clips)),
                *("--crops", str(options.crops)),
            ]
        if job.stage == "pipeline":
            flags = ["--config-dir", str(self.config_dir), "--data", str(data)]
            flags += ["--out", str(directory / "artifact"), "--work", str(directory / "work")]
            sets = self._pipeline_sets(job)
        else:
            flags = ["--config", str(self.config_dir / f"{job.stage}.yaml")]
            sets = [f"data.root={data}", f"run.output_dir={directory / job.stage}"]
            if job.stage == "distill":
                sets += [f"export_dir={directory / 'artifact'}", f"version=job-{job.id}"]
            sets += _as_sets(job.overrides)
        return [*lumos, *flags, *(arg for item in sets for arg in ("--set", item))]

    def progress(self, job: Job, directory: Path) -> dict[str, Any]:
        """Progress, current step and latest metrics, read from the metrics.jsonl file the
        training engine opens when a recipe starts (in `<stage>/`) and appends to after each
        logging interval and epoch: progress is epochs done over epochs planned."""
        if job.stage == "eval":
            return {"step": "evaluating"}
        planned = self._planned_epochs(job)
        done: dict[str, int] = {}
        metrics: dict[str, Any] = {}
        logs = sorted(directory.rglob("metrics.jsonl"), key=lambda p: p.stat().st_mtime)
        for path in logs:
            stage = path.parent.name
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line being written
                split = record.get("split", "?")
                if split != "train":
                    done[stage] = max(done.get(stage, 0), int(record.get("epoch", 0)) + 1)
                skip = {"time", "stage", "split", "epoch", "step"}
                metrics.update(
                    {f"{stage}.{split}.{k}": v for k, v in record.items() if k not in skip}
                )
        total = sum(planned.values()) or 1
        fraction = min(sum(min(done.get(s, 0), n) for s, n in planned.items()) / total, 0.99)
        step = None
        if logs:  # the recipe that wrote last is the one running
            stage = logs[-1].parent.name
            epochs = planned.get(stage, 0)
            step = f"{stage} epoch {min(done.get(stage, 0) + 1, epochs)}/{epochs}"
        return {"progress": fraction, "step": step, "metrics": metrics}

    def _planned_epochs(self, job: Job) -> dict[str, int]:
        if job.id not in self._epochs:
            configs = self._stage_configs(job)
            self._epochs[job.id] = {stage: c.optim.epochs for stage, c in configs.items()}
        return self._epochs[job.id]

    def outcome(self, job: Job, directory: Path) -> tuple[Path | None, dict[str, Any]]:
        """After a successful run: the student artifact it wrote (if any) and its final report,
        the JSON the `lumos train` command printed on stdout."""
        self._epochs.pop(job.id, None)
        artifact = directory / "artifact"
        found = artifact if (artifact / "manifest.json").is_file() else None
        try:
            report = json.loads((directory / "stdout.json").read_text())
        except (FileNotFoundError, ValueError):
            report = {}
        return found, report if isinstance(report, dict) else {}


def job_store(settings: Settings) -> JobStore:
    """Redis-backed records when the service runs as several processes, else in-process."""
    if settings.redis_url is None:
        return MemoryJobStore()
    return RedisJobStore(thread_client(settings.redis_url))
