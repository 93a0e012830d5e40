"""The inference worker: queue -> dynamic batches -> model -> results, acknowledged after storing.

Batching trades a few milliseconds of waiting for throughput: a batch starts with the first clip
available and takes more until it is full or `batch_wait_ms` has passed; one batch holds one clip
shape. The model runs in a worker thread so the event loop keeps collecting the next batch; a GPU
backend keeps two batches in flight so the upload of one overlaps the compute of the other.

A newly activated model version is loaded beside the serving one and swapped in between batches;
the previous engine stays loaded for clips still cut to its shape, so no clip is dropped by a swap.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from redis.exceptions import RedisError

from model.artifact import WEIGHTS, load_artifact
from model.clip import ClipSpec
from model.networks import Student
from service.backend_cache import ChoiceCache, cpu_key
from service.backends import (
    Acceptance,
    Backend,
    Trial,
    calibration_batch,
    choose,
    factories,
    measure,
    weights_digest,
)
from service.int8 import load_calibration
from service.metrics import (
    CLIP_LATENCY,
    INFERENCE_BATCH_SIZE,
    INFERENCE_SECONDS,
    PREDICTIONS,
    QUEUE_WAIT,
    set_model_version,
)
from service.queue.base import (
    ClipQueue,
    ClipResult,
    Delivery,
    Latency,
    Prediction,
    ResultStore,
)
from service.registry import ActiveModel
from service.settings import Settings

log = logging.getLogger(__name__)

_POLL_S = 0.5  # longest a worker blocks on an empty queue before checking whether to stop


@dataclass(frozen=True)
class Engine:
    """A loaded model version and the backend chosen to run it."""

    version: str
    path: Path
    labels: list[str]
    spec: ClipSpec
    backend: Backend
    trials: list[Trial]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.spec.frames, self.spec.side, self.spec.side


def load_engine(path: Path, settings: Settings) -> Engine:
    """Load the artifact at `path` and pick its backend (blocking: seconds, run it in a thread).

    The pick is remembered in `settings.cache_dir`: a restart on the same machine builds only the
    backend chosen before, without timing anything."""
    began = time.perf_counter()
    network, manifest = load_artifact(path)
    if not isinstance(network, Student):
        raise ValueError(f"{path} holds a {manifest.arch.kind}; only a student can be served")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    cuda = torch.cuda.is_available()
    if settings.backend == "cuda" and not cuda:
        raise ValueError("backend cuda asked for, but torch sees no CUDA device")
    spec = manifest.clip
    clips = None if cuda else load_calibration(path, spec)
    weights = path / WEIGHTS
    candidates = factories(
        network,
        spec,
        weights,
        settings.cache_dir,
        torch.get_num_threads(),
        cuda,
        settings.cuda_streams,
        int8_clips=None if clips is None else clips.calibration,
        cpu=cpu_key(),
    )
    wanted = {"auto": list(candidates), "cuda": ["cuda-amp"]}.get(
        settings.backend, [settings.backend]
    )
    if not set(wanted) <= set(candidates):
        raise ValueError(f"backend {settings.backend} does not run here; try {list(candidates)}")
    acceptance = Acceptance(settings.accept_agreement, settings.accept_prob_change)
    cache = ChoiceCache(settings.cache_dir)
    key = cache.key(
        weights_digest(weights),
        (spec.frames, spec.crop),
        candidates=wanted,
        acceptance=acceptance,
        batch=settings.batch_max,
        agreement_clips=0 if clips is None else len(clips.agreement),
    )
    remembered = cache.get(key)
    backend = None
    if remembered is not None:
        chosen, trials = remembered
        try:
            backend = candidates[chosen]()
            how = f"chosen before, {cache.directory}"
        except Exception as exc:  # e.g. a cached export deleted since: measure again
            log.warning("cannot rebuild the remembered backend %s: %s", chosen, exc)
    if backend is None:
        log.info("timing %d backend candidates for model %s", len(wanted), manifest.version)
        built, trials = measure(
            {name: candidates[name] for name in wanted},
            calibration_batch(spec, settings.batch_max),
            None if clips is None else clips.agreement,
            acceptance,
        )
        backend = choose(built, trials)
        try:
            how = f"measured now, remembered in {cache.put(key, backend.name, trials, {})}"
        except OSError as exc:  # a read-only cache costs the next start the timing, nothing else
            how = f"measured now, not remembered: {exc}"
    log.info(
        "model %s on %s (%s; loaded in %.1f s; %s)",
        manifest.version,
        backend.name,
        how,
        time.perf_counter() - began,
        "; ".join(t.describe() for t in trials),
    )
    return Engine(manifest.version, path, manifest.labels, spec, backend, trials)


class InferenceWorker:
    def __init__(
        self,
        queue: ClipQueue,
        results: ResultStore,
        active: ActiveModel,
        settings: Settings,
    ) -> None:
        self.queue = queue
        self.results = results
        self.active = active
        self.settings = settings
        self.consumer = settings.worker_id
        self.engine: Engine | None = None
        self.previous: Engine | None = None
        self._backlog: list[Delivery] = []
        self._held: set[tuple[str, str]] = set()
        """(lane, token) of every clip this worker holds, waiting or in a batch."""
        self._executor = ThreadPoolExecutor(2, thread_name_prefix="infer")
        self.loaded = asyncio.Event()
        """Set once the first model is loaded and clips are being taken."""

    async def run(self, stopping: asyncio.Event) -> None:
        """Serve until `stopping`; batches in flight finish, unacknowledged clips are reclaimed
        by another worker (Redis) or die with the process (in-memory)."""
        self.engine = await self._first_engine(stopping)
        if self.engine is None:
            return
        self.loaded.set()
        helpers = [
            asyncio.create_task(self._swap_models()),
            asyncio.create_task(self._every(self.settings.claim_idle_ms / 2000, self._reclaim)),
        ]
        in_flight = asyncio.Semaphore(2 if self.engine.backend.pipelined else 1)
        running: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            in_flight.release()

        try:
            while not stopping.is_set():
                try:
                    batch = await self._next_batch()
                except (RedisError, OSError) as exc:
                    log.warning("cannot read the queue: %s", exc)
                    await asyncio.sleep(1.0)
                    continue
                if not batch:
                    continue
                await in_flight.acquire()
                task = asyncio.create_task(self._run_batch(batch))
                running.add(task)
                task.add_done_callback(finished)
        finally:
            for helper in helpers:
                helper.cancel()
            if running:
                await asyncio.wait(running)
            self._executor.shutdown(wait=False)

    async def _first_engine(self, stopping: asyncio.Event) -> Engine | None:
        active = await self.active.first(stopping)
        if active is None:
            return None
        engine = await asyncio.to_thread(load_engine, active.path, self.settings)
        set_model_version(engine.version)
        return engine

    async def _every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except (RedisError, OSError) as exc:
                log.warning("%s failed: %s", action.__name__, exc)

    async def _swap_models(self) -> None:
        """Swap in each newly activated version. One that fails to load is reported once, and
        the serving one stays until another version is activated."""
        assert self.engine is not None
        seen = self.engine.path
        while True:
            active = await self.active.changed(seen)
            seen = active.path
            if seen == self.engine.path:
                continue
            try:
                engine = await asyncio.to_thread(load_engine, seen, self.settings)
            except (ValueError, RuntimeError, OSError) as exc:
                serving = self.engine.version
                log.error("cannot serve model %s, keeping %s: %s", active.version, serving, exc)
                continue
            self.previous, self.engine = self.engine, engine
            set_model_version(engine.version)
            log.info("now serving model %s (was %s)", engine.version, self.previous.version)

    async def _reclaim(self) -> None:
        """Take over clips idle past `claim_idle_ms` on any consumer: a dead worker's, or (after
        a restart under the same name) our own from before. Clips we hold are not taken twice."""
        claimed = await self.queue.reclaim(
            self.consumer, self.settings.claim_idle_ms, 4 * self.settings.batch_max
        )
        fresh = self._hold([d for d in claimed if (d.lane, d.token) not in self._held])
        if fresh:
            log.warning("reclaimed %d clips from a stalled or dead worker", len(fresh))
            self._backlog += fresh

    def _hold(self, deliveries: list[Delivery]) -> list[Delivery]:
        self._held.update((d.lane, d.token) for d in deliveries)
        return deliveries

    async def _next_batch(self) -> list[Delivery]:
        """Up to `batch_max` clips of one shape, waiting at most `batch_wait_ms` to fill."""
        limit = self.settings.batch_max
        if not self._backlog:
            # `+=`: the reclaim task may add to the backlog while this waits.
            self._backlog += self._hold(await self.queue.get(self.consumer, limit, _POLL_S))
            if not self._backlog:
                return []
        loop = asyncio.get_running_loop()
        shape = self._backlog[0].clip.shape
        deadline = loop.time() + self.settings.batch_wait_ms / 1000
        while (room := limit - sum(d.clip.shape == shape for d in self._backlog)) > 0:
            left = deadline - loop.time()
            if left <= 0:
                break
            more = self._hold(await self.queue.get(self.consumer, room, left))
            if not more:
                break
            self._backlog += more
        batch, rest = [], []
        for d in self._backlog:
            (batch if d.clip.shape == shape and len(batch) < limit else rest).append(d)
        self._backlog = rest
        return batch

    def _engine_for(self, shape: tuple[int, int, int]) -> Engine | None:
        for engine in (self.engine, self.previous):
            if engine is not None and engine.shape == shape:
                return engine
        return None

    async def _run_batch(self, batch: list[Delivery]) -> None:
        """Infer, store every result, then acknowledge; if storing fails nothing is acknowledged
        and the clips come back (their results are stored once, whoever stores them first)."""
        try:
            results = await self._infer(batch)
            for result in results:
                if not await self.results.put(result):
                    continue  # a redelivered clip: its result was stored (and counted) before
                if result.top:
                    PREDICTIONS.labels(label=result.top[0].label).inc()
                    CLIP_LATENCY.observe(result.latency.total)
            await self.queue.ack(batch)
        except (RedisError, OSError) as exc:
            log.warning("batch of %d clips left for redelivery: %s", len(batch), exc)
        finally:
            self._held.difference_update((d.lane, d.token) for d in batch)

    async def _infer(self, batch: list[Delivery]) -> list[ClipResult]:
        begin = time.time()
        waits = [begin - d.enqueued for d in batch]
        for wait in waits:
            QUEUE_WAIT.observe(wait)
        engine = self._engine_for(batch[0].clip.shape)
        if engine is None:
            t, s, _ = batch[0].clip.shape
            error = f"no loaded model takes {t} x {s} x {s} clips"
            log.error("%s (%d clips of stream %s)", error, len(batch), batch[0].clip.stream)
            return [
                self._result(d, w, 0.0, None, None, error)
                for d, w in zip(batch, waits, strict=True)
            ]
        frames = np.stack([d.clip.frames for d in batch])
        loop = asyncio.get_running_loop()
        try:
            wait = await loop.run_in_executor(self._executor, engine.backend.start, frames)
            probs = await loop.run_in_executor(self._executor, wait)
        except Exception as exc:  # a model failure must not take the worker down
            log.exception("inference failed on a batch of %d clips", len(batch))
            error = f"inference failed: {type(exc).__name__}: {exc}"
            return [
                self._result(d, w, 0.0, engine, None, error)
                for d, w in zip(batch, waits, strict=True)
            ]
        seconds = time.time() - begin
        INFERENCE_SECONDS.observe(seconds)
        INFERENCE_BATCH_SIZE.observe(len(batch))
        return [
            self._result(d, w, seconds, engine, p, None)
            for d, w, p in zip(batch, waits, probs, strict=True)
        ]

    def _result(
        self,
        delivery: Delivery,
        queue_wait: float,
        inference: float,
        engine: Engine | None,
        probs: np.ndarray | None,
        error: str | None,
    ) -> ClipResult:
        clip = delivery.clip
        scores = (
            {label: round(float(p), 6) for label, p in zip(engine.labels, probs, strict=True)}
            if engine is not None and probs is not None
            else {}
        )
        best = sorted(scores.items(), key=lambda item: item[1], reverse=True)
        return ClipResult(
            clip_id=clip.id,
            stream=clip.stream,
            seq=clip.seq,
            start=clip.start,
            end=clip.end,
            model_version=engine.version if engine else "",
            backend=engine.backend.name if engine else "",
            top=[Prediction(label=k, score=v) for k, v in best[: self.settings.top_k]],
            scores=scores,
            latency=Latency(
                queue_wait=round(queue_wait, 4),
                inference=round(inference, 4),
                total=round(time.time() - clip.end, 4),
            ),
            illumination=clip.illumination,
            integrity=clip.integrity,
            error=error,
        )
