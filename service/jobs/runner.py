"""The job runner: takes queued jobs and runs each as its own `lumos train` subprocess.

Each subprocess gets a new process group, so a cancel can stop the whole tree and a crash of the
training code cannot take the runner down. While a job runs the runner copies its progress (the
typed progress files, through the planner), latest metrics and log tail into the record, every
server path shown relative to its root; on success the student artifact it wrote is registered
as a model version named after the job. `lumos trainer` runs one in its main thread, the embedded
`lumos serve` in a thread of the API process.
"""

import json
import logging
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.jobs.planner import JobPlanner
from service.jobs.records import Job, JobError, JobState
from service.jobs.roots import Roots
from service.jobs.store import JobStore, count_states, reap
from service.registry import ModelRegistry, RegistryError
from service.settings import Settings

log = logging.getLogger(__name__)

_LOG_TAIL_LINES = 40
_KILL_GRACE_S = 5.0


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


class JobRunner:
    """Takes queued jobs and runs at most `trainer_concurrency` of them at once.

    `worker_id` names this runner in the records of its jobs; it renews their leases on every
    tick, each for `job_lease_s` seconds.
    """

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        registry: ModelRegistry,
        planner: JobPlanner,
        poll_s: float = 0.5,
    ) -> None:
        self.store = store
        self.registry = registry
        self.planner = planner
        self.roots = Roots(settings)
        self.runs_dir = settings.runs_dir
        self.worker = settings.worker_id
        self.lease_s = settings.job_lease_s
        self.concurrency = settings.trainer_concurrency
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
        tail = [self.roots.relative(line) for line in _tail(run.directory / "job.log")]
        job = run.job.model_copy(update={"log_tail": tail, **progress})
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
        error = job.error and self.roots.relative(job.error)
        update = {"state": state, "finished": datetime.now(UTC), "step": None, "error": error}
        job = job.model_copy(update=update)
        self.store.save(job)
        log.info("trainer: job %s %s%s", job.id, state, f": {job.error}" if job.error else "")
