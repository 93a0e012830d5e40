"""One camera's event rules, run in its ingest worker on the results of the clips it queued.

The ingest worker is where the frames are, so the evidence is cut there: the tracker keeps the
last seconds of the camera's evidence-sized frames, follows the camera's clips in the order they
were queued, waits for each one's result, and steps the rules. Its state goes to the event store
after every result; a worker that dies mid-event leaves it there and the camera's next owner
continues the open event (or closes it, if the camera was away too long).
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from redis.exceptions import RedisError

from service.cameras import Camera
from service.events.evidence import EvidenceStore
from service.events.notify import Notifier
from service.events.rules import Event, Rules, TrackerState, step
from service.events.store import EventStore
from service.metrics import EVENTS
from service.queue.base import ClipResult, ResultStore
from service.settings import Settings

log = logging.getLogger(__name__)

_INFERENCE_GRACE_S = 10.0
_RECHECK_S = 1.0


@dataclass(frozen=True)
class EventServices:
    """What every camera's tracker in a process shares."""

    store: EventStore
    evidence: EvidenceStore
    results: ResultStore
    notifier: Notifier
    settings: Settings

    async def retain(self) -> None:
        """Apply retention: evidence by age and bytes, event records by age."""
        settings = self.settings
        gone = await asyncio.to_thread(
            self.evidence.prune, settings.event_max_age_s, settings.event_max_bytes
        )
        old = await self.store.older_than(time.time() - settings.event_max_age_s)
        for event_id in {*gone, *(e.id for e in old if e.status == "closed")}:
            await self.store.delete(event_id)


class EventTracker:
    def __init__(self, camera: Camera, rules: Rules, services: EventServices, fps: float) -> None:
        self.camera = camera
        self.rules = rules
        self.services = services
        self.fps = fps
        settings = services.settings
        self.frames: deque[tuple[float, np.ndarray]] = deque(
            maxlen=max(1, round(fps * (settings.event_clip_max_s + 1)))
        )
        self._clips: deque[tuple[str, float]] = deque()
        """(id, wall-clock end) of the clips queued and not yet stepped, oldest first."""
        self._queued = asyncio.Event()
        self._overtaken: float | None = None
        """When a later clip's result was first seen while the oldest clip had none."""

    def frame(self, wall: float, view: np.ndarray | None) -> None:
        if view is not None:
            self.frames.append((wall, view))

    def queued(self, clip_id: str, end: float) -> None:
        """Follow the clip `clip_id`, whose last frame was at `end` (wall time)."""
        self._clips.append((clip_id, end))
        self._queued.set()

    async def run(self) -> None:
        store = self.services.store
        state = await self._resume()
        while True:
            if not self._clips:
                self._queued.clear()
                await self._queued.wait()
            clip_id = self._clips[0][0]
            try:
                result = await self._result()
                if result is not None:
                    for kind, event in step(self.rules, state, result):
                        await self._changed(kind, event)
                    await store.save_state(self.camera.id, state)
                self._clips.popleft()
            except (RedisError, OSError) as exc:
                log.warning("camera %s: events wait for the store: %s", self.camera.id, exc)
                await asyncio.sleep(1.0)
            except Exception:  # a bug here must not end the camera's events for good
                log.exception("camera %s: events failed on clip %s", self.camera.id, clip_id)
                self._clips.popleft()

    async def _result(self) -> ClipResult | None:
        """The oldest followed clip's result, or None once it will not come.

        A live clip can be dropped (the queue's overflow, or staleness) and then has no result
        ever. So the oldest clip is passed over when its successors have had results for a
        recheck period (an overflow drop), when it is past the staleness budget while they have
        (a stale drop), or when it is past the budget and a grace for slow inference; a backlog
        of dropped clips is passed over at once, not one timeout each.
        """
        results, settings = self.services.results, self.services.settings
        clip_id, end = self._clips[0]
        while True:
            found = await results.get_many([i for i, _ in self._clips])
            if clip_id in found:
                self._overtaken = None
                return found[clip_id]
            now = time.time()
            if found and self._overtaken is None:
                self._overtaken = now
            late = now - end - settings.staleness_s
            overtaken = self._overtaken is not None and now - self._overtaken >= _RECHECK_S
            if late > _INFERENCE_GRACE_S or (found and (late > 0 or overtaken)):
                log.info(
                    "camera %s: clip %s has no result; events skip it", self.camera.id, clip_id
                )
                return None
            with contextlib.suppress(TimeoutError):
                await results.wait(self.camera.id, [clip_id], _RECHECK_S)

    async def _resume(self) -> TrackerState:
        """The camera's state as its last owner left it; an event left open longer ago than
        `event_resume_s` is closed now, at its last clip."""
        store = self.services.store
        while True:
            try:
                state = await store.load_state(self.camera.id)
                event = state.event
                if (
                    event is not None
                    and time.time() - event.end > self.services.settings.event_resume_s
                ):
                    state.event = None
                    state.quiet_until = event.end + self.rules.cooldown_s
                    closed = {"status": "closed", "updated": time.time()}
                    await self._changed("closed", event.model_copy(update=closed))
                    await store.save_state(self.camera.id, state)
                elif event is not None:
                    log.info("camera %s: continuing event %s", self.camera.id, event.id)
                state.run.clear()  # a run is consecutive clips of one connection
                return state
            except (RedisError, OSError) as exc:
                log.warning("camera %s: cannot load event state: %s", self.camera.id, exc)
                await asyncio.sleep(1.0)

    async def _changed(self, kind: str, event: Event) -> None:
        services = self.services
        if kind == "closed":
            try:
                event.evidence = await asyncio.to_thread(
                    services.evidence.write,
                    event,
                    list(self.frames),
                    self.fps,
                    services.settings.event_enhanced,
                )
            except Exception:  # no evidence is bad; losing the event too would be worse
                log.exception("camera %s: evidence of event %s not written", event.camera, event.id)
        await services.store.put(event)
        if kind == "opened":
            EVENTS.labels(camera=event.camera, label=event.label).inc()
            log.info(
                "camera %s: event %s opened (%s %.2f)",
                event.camera,
                event.id,
                event.label,
                event.score,
            )
            services.notifier.state(event.camera, event)
        elif kind == "closed":
            log.info(
                "camera %s: event %s closed after %.1f s",
                event.camera,
                event.id,
                event.end - event.start,
            )
            services.notifier.event(event, self.camera.webhook)
            services.notifier.state(event.camera, None)
            await services.retain()
