"""Where job records live, and the operations every reader may perform on them.

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

import logging
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Protocol

from redis import Redis

from service.connections import thread_client
from service.jobs.records import FINAL_STATES, Job, JobError, JobState
from service.metrics import JOBS
from service.settings import Settings

log = logging.getLogger(__name__)


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
        raise JobError("unknown_job", f"no job {job_id!r}")
    if job.state in FINAL_STATES:
        raise JobError("job_finished", f"job {job_id} is already {job.state}")
    store.request_cancel(job_id)
    if job.state == JobState.QUEUED and store.dequeue(job_id):
        now = datetime.now(UTC)
        job = job.model_copy(update={"state": JobState.CANCELLED, "finished": now})
        store.save(job)
    return store.get(job_id) or job


def job_store(settings: Settings) -> JobStore:
    """Redis-backed records when the service runs as several processes, else in-process."""
    if settings.redis_url is None:
        return MemoryJobStore()
    return RedisJobStore(thread_client(settings.redis_url))
