"""The clip queue and the result store: the interfaces every backend implements, and the results.

Clips travel in two lanes: `files` (uploads: never dropped; a producer waits while the lane is
full) and `live` (cameras: bounded; the oldest undelivered clip drops to make room, and a clip
older than the staleness budget is dropped instead of delivered; both counted). A consumer
acknowledges a clip only after its result is stored, so a consumer that dies loses nothing: its
clips are redelivered (Redis: reclaimed after `claim_idle_ms`), and because results are stored by
clip id, first write wins, a redelivered clip never yields a second result.
"""

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from service.clips import Clip, Integrity
from service.illumination import Illumination
from service.metrics import QUEUE_DEPTH, STREAM_FRAMES_DROPPED

log = logging.getLogger(__name__)

LANES = ("files", "live")


def lane_of(clip: Clip) -> str:
    return "live" if clip.live else "files"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A clip handed to a consumer; ack it (by `token`) once its result is stored."""

    clip: Clip
    lane: str
    token: str
    enqueued: float
    """Wall-clock time the clip entered the queue."""


class ClipQueue(ABC):
    """Two lanes of clips with at-least-once delivery to a group of consumers."""

    def __init__(self, files_max: int, live_max: int, staleness_s: float) -> None:
        self.bounds = {"files": files_max, "live": live_max}
        self.staleness_s = staleness_s
        self.last_depth = dict.fromkeys(LANES, 0)
        """Per lane, as the depth monitor last read it (the gauge, the API's admission check)."""
        self._files_after_put = 0
        """The upload lane's depth right after this process's last put: its backpressure."""

    async def put(self, clip: Clip) -> None:
        """Enqueue `clip`: a file clip waits for room, a live clip makes room (drops counted).

        Room in the upload lane is judged by the depth the last put left, so a put is one round
        trip to a shared queue rather than two; the price is that each concurrent put may
        overshoot the bound by its one clip.
        """
        lane = lane_of(clip)
        while lane == "files" and self._files_after_put >= self.bounds[lane]:
            await asyncio.sleep(0.05)
            self._files_after_put = (await self.depth())[lane]
        depth, dropped = await self._append(lane, clip)
        if lane == "files":
            self._files_after_put = depth
        for stream in dropped:
            STREAM_FRAMES_DROPPED.labels(stream=stream, reason="overflow").inc()

    async def get(self, consumer: str, count: int, timeout: float) -> list[Delivery]:
        """Up to `count` clips (possibly more, across lanes), waiting at most `timeout` s for one.

        Live clips past the staleness budget are acknowledged and dropped here, counted, so every
        consumer holds the budget without thinking about it.
        """
        return await self._fresh(await self._read(consumer, count, timeout))

    async def reclaim(self, consumer: str, idle_ms: int, count: int) -> list[Delivery]:
        """Clips delivered to another consumer and unacknowledged for `idle_ms`: now `consumer`'s.

        Stale live clips are dropped as in `get`.
        """
        return await self._fresh(await self._claim(consumer, idle_ms, count))

    async def _fresh(self, deliveries: list[Delivery]) -> list[Delivery]:
        fresh: list[Delivery] = []
        stale: list[Delivery] = []
        now = time.time()
        for d in deliveries:
            (stale if d.clip.live and now - d.clip.end > self.staleness_s else fresh).append(d)
        if stale:
            await self.ack(stale)
            for d in stale:
                STREAM_FRAMES_DROPPED.labels(stream=d.clip.stream, reason="stale").inc()
        return fresh

    async def depth(self) -> dict[str, int]:
        """Clips per lane not yet acknowledged; also updates the queue-depth gauge."""
        depths = await self._depths()
        for lane, n in depths.items():
            QUEUE_DEPTH.labels(queue=lane).set(n)
        self.last_depth = depths
        return depths

    @abstractmethod
    async def _append(self, lane: str, clip: Clip) -> tuple[int, list[str]]:
        """Add `clip`; for the live lane drop the oldest undelivered clips beyond the bound.
        Returns the lane's depth after it and the stream ids of the dropped clips."""

    @abstractmethod
    async def _read(self, consumer: str, count: int, timeout: float) -> list[Delivery]: ...

    @abstractmethod
    async def _depths(self) -> dict[str, int]: ...

    @abstractmethod
    async def ack(self, deliveries: Iterable[Delivery]) -> None: ...

    @abstractmethod
    async def _claim(self, consumer: str, idle_ms: int, count: int) -> list[Delivery]: ...


class Prediction(BaseModel):
    label: str
    score: float


class Latency(BaseModel):
    """Seconds spent per step of one clip's way."""

    queue_wait: float
    inference: float
    """The batched forward pass the clip was part of."""
    total: float
    """From the clip's last frame to its stored result."""


class ClipResult(BaseModel):
    """What inference says about one clip, with the facts needed to judge it."""

    clip_id: str
    stream: str
    seq: int
    start: float
    end: float
    model_version: str
    backend: str
    top: list[Prediction]
    scores: dict[str, float]
    """Probability of every label of the model."""
    latency: Latency
    illumination: Illumination
    integrity: Integrity
    error: str | None = None
    """Set when the clip could not be classified (then `top` and `scores` are empty)."""


class Summary(BaseModel):
    """A whole video or stream: the mean of its clips' scores."""

    clips: int
    top: list[Prediction]
    scores: dict[str, float]
    model_versions: list[str]


def summarize(results: Sequence[ClipResult], top_k: int = 5) -> Summary:
    """Average the clips' scores label by label (clips without scores, i.e. errors, skipped)."""
    scored = [r for r in results if r.scores]
    totals: defaultdict[str, float] = defaultdict(float)
    for result in scored:
        for label, score in result.scores.items():
            totals[label] += score
    mean = {label: total / len(scored) for label, total in totals.items()}
    best = sorted(mean.items(), key=lambda item: item[1], reverse=True)[:top_k]
    return Summary(
        clips=len(results),
        top=[Prediction(label=label, score=score) for label, score in best],
        scores=mean,
        model_versions=sorted({r.model_version for r in scored}),
    )


class ResultStore(ABC):
    """Results by clip id (first write wins), readable by id and per stream in time order."""

    @abstractmethod
    async def put(self, result: ClipResult) -> bool:
        """Store `result` unless one exists for its clip; True when this call stored it."""

    @abstractmethod
    async def get_many(self, ids: Sequence[str]) -> dict[str, ClipResult]: ...

    @abstractmethod
    async def for_stream(
        self, stream: str, since: float = 0.0, limit: int = 1000
    ) -> list[ClipResult]:
        """The stream's results whose clip started after `since` (Unix time), oldest first."""

    @abstractmethod
    async def wait(self, stream: str, ids: Sequence[str], timeout: float) -> list[ClipResult]:
        """The results of clips `ids` of `stream` in the order given, once all exist.

        Raises TimeoutError after `timeout` seconds.
        """
