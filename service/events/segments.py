"""An upload's timeline as runs of one label: what an average over the whole video hides.

"Walk 57.8%" over a video in which someone ran for two seconds says nothing of the run; its
segments say Walk 0-6 s, Run 6-8 s, Walk 8-14 s. A run is consecutive clips with the same top
label; a clip without a result (an error) ends a run and starts none.
"""

from pydantic import BaseModel, ConfigDict

from service.queue.base import ClipResult


class Segment(BaseModel):
    """A run of consecutive clips with one top label: a short action shows as its own segment
    where the whole-video average would hide it."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    label: str
    """The clips' top label."""
    start: float
    """Media seconds of its first clip's first frame."""
    end: float
    """Media seconds of its last clip's last frame."""
    first_seq: int
    """`seq` of its first clip."""
    last_seq: int
    """`seq` of its last clip."""
    clips: int
    """How many clips it spans."""
    peak: float
    """Highest top-1 score of its clips."""
    mean: float
    """Mean top-1 score of its clips."""


def segments(clips: list[ClipResult], frames: int, fps: float, stride: int) -> list[Segment]:
    """Runs of `clips` (in order) with one top label; clip `seq` starts at `seq * stride / fps`
    and spans `frames` frames."""
    found: list[Segment] = []
    run: list[ClipResult] = []

    def close() -> None:
        if run:
            scores = [c.top[0].score for c in run]
            found.append(
                Segment(
                    label=run[0].top[0].label,
                    start=round(run[0].seq * stride / fps, 3),
                    end=round((run[-1].seq * stride + frames - 1) / fps, 3),
                    first_seq=run[0].seq,
                    last_seq=run[-1].seq,
                    clips=len(run),
                    peak=max(scores),
                    mean=round(sum(scores) / len(scores), 6),
                )
            )
            run.clear()

    for clip in clips:
        if clip.error or not clip.top:
            close()
            continue
        if run and (clip.top[0].label != run[0].top[0].label or clip.seq != run[-1].seq + 1):
            close()
        run.append(clip)
    close()
    return found
