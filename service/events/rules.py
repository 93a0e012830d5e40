"""Per-camera rules, regions of interest, and the step that turns clip results into events.

The step is a pure function of the camera's state and one result, so the state can live in Redis
between results: a worker that dies mid-event leaves the state behind, and the camera's next
owner carries on with the same open event instead of losing it or opening a second one.
"""

import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.queue.base import ClipResult

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Rules(BaseModel):
    """When a camera's clips make an event."""

    model_config = ConfigDict(extra="forbid")

    labels: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list,
        max_length=100,
        description="Labels that make an event; empty: any label.",
    )
    min_score: Unit = Field(0.6, description="A clip counts when its top score reaches this.")
    min_clips: int = Field(
        2, ge=1, le=100, description="Consecutive counting clips before an event opens."
    )
    cooldown_s: float = Field(
        30.0, ge=0, le=86_400, description="No new event this long after one ends."
    )

    def matches(self, result: ClipResult) -> bool:
        if result.error or not result.top:
            return False
        best = result.top[0]
        return best.score >= self.min_score and (not self.labels or best.label in self.labels)


class Roi(BaseModel):
    """A region of interest in relative coordinates (0-1, origin top left): two points are a
    box's corners, three or more a polygon. Clips are cut from its bounding box."""

    model_config = ConfigDict(extra="forbid")

    points: list[tuple[Unit, Unit]] = Field(
        min_length=2,
        max_length=64,
        description="`[x, y]` pairs in 0-1: a box's two corners, or a polygon's vertices.",
    )

    @model_validator(mode="after")
    def _not_degenerate(self) -> "Roi":
        x0, y0, x1, y1 = self.box()
        if x1 - x0 < 0.05 or y1 - y0 < 0.05:
            raise ValueError("the region must span at least 5% of the frame each way")
        return self

    def box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the bounding box."""
        xs = [x for x, _ in self.points]
        ys = [y for _, y in self.points]
        return min(xs), min(ys), max(xs), max(ys)


class Evidence(BaseModel):
    """What was kept of an event under `<event_dir>/<id>/`."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    frames: int
    """Frames in the evidence clip."""
    fps: float
    """Its frame rate."""
    duration: float
    """Seconds of the evidence clip."""
    enhanced: bool
    """A Retinex-enhanced clip and key frame were written beside the captured ones."""


class Event(BaseModel):
    """Something a camera's rules found: a run of clips whose label and score count, with the
    evidence kept of it."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """The event's id, as in its paths."""
    camera: str
    """The camera (stream id) it happened on."""
    label: str
    """The peak clip's label."""
    score: float
    """The peak clip's score: the highest of the event."""
    start: float
    """Wall-clock start of the event's first clip (Unix seconds)."""
    end: float
    """Wall-clock end of its latest clip."""
    status: Literal["open", "closed"]
    """`open` while its clips still count, then `closed`."""
    clips: int
    """Clips that counted towards it."""
    peak_clip: str
    """The id of its highest-scoring clip."""
    peak_time: float
    """Middle of the peak clip: the key frame is taken there."""
    model_version: str
    """The model version that classified its clips."""
    evidence: Evidence | None = None
    """What was kept; null until written (or when evidence is off)."""
    updated: float
    """Unix time of its latest change."""


class TrackerState(BaseModel):
    """A camera's progress through its rules, kept between results."""

    run: list[ClipResult] = Field(default_factory=list)
    """Consecutive counting clips not yet an event (at most `min_clips - 1`)."""
    event: Event | None = None
    quiet_until: float = 0.0
    """Cooldown: no event opens from clips starting before this."""
    last_seq: int = -1


Change = tuple[Literal["opened", "updated", "closed"], Event]


def step(rules: Rules, state: TrackerState, result: ClipResult) -> list[Change]:
    """Feed one result (in clip order) into `state`, in place; returns what happened to events.

    An event opens with the `min_clips`-th consecutive counting clip, starting at the first of
    them; it grows while clips count and closes at the first that does not (or with an error),
    its end the last counting clip's end. A cooldown then follows.
    """
    state.last_seq = result.seq
    now = time.time()
    event = state.event
    if not rules.matches(result):
        state.run.clear()
        if event is None:
            return []
        state.event = None
        state.quiet_until = event.end + rules.cooldown_s
        return [("closed", event.model_copy(update={"status": "closed", "updated": now}))]
    if event is not None:
        event.clips += 1
        event.end = result.end
        event.updated = now
        if result.top[0].score > event.score:
            _peak(event, result)
        return [("updated", event)]
    if result.start < state.quiet_until:
        return []
    state.run.append(result)
    if len(state.run) < rules.min_clips:
        return []
    first, peak = state.run[0], max(state.run, key=lambda r: r.top[0].score)
    event = Event(
        id=uuid.uuid4().hex,
        camera=result.stream,
        label="",
        score=0.0,
        start=first.start,
        end=result.end,
        status="open",
        clips=len(state.run),
        peak_clip="",
        peak_time=0.0,
        model_version=result.model_version,
        updated=now,
    )
    _peak(event, peak)
    state.run.clear()
    state.event = event
    return [("opened", event)]


def _peak(event: Event, result: ClipResult) -> None:
    event.label, event.score = result.top[0].label, result.top[0].score
    event.peak_clip, event.peak_time = result.clip_id, (result.start + result.end) / 2
