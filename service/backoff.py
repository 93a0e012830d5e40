"""The reconnect schedule of live sources: `"1x5,5x5,10x10,60"`, delay x attempts per step.

A small language in one setting (`LUMOS_RECONNECT_BACKOFF`), parsed when the settings are read so
that a bad schedule stops the process at start, and again by each camera's reader for its delays.
"""

import re
from collections.abc import Iterator
from itertools import repeat

_STEP = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:x\s*(\d+))?\s*$")


def parse_backoff(schedule: str) -> list[tuple[float, int | None]]:
    """ "1x5,5x5,10x10,60" -> [(1, 5), (5, 5), (10, 10), (60, None)]: delay x attempts, the last
    step repeating forever."""
    steps: list[tuple[float, int | None]] = []
    parts = schedule.split(",")
    for i, part in enumerate(parts):
        match = _STEP.match(part)
        if not match:
            raise ValueError(f"backoff step {part!r} is not DELAY or DELAYxCOUNT")
        count = int(match[2]) if match[2] else None
        if count is None and i < len(parts) - 1:
            raise ValueError(f"only the last backoff step may omit its count, not {part!r}")
        steps.append((float(match[1]), count))
    return steps


def backoff_delays(schedule: str) -> Iterator[float]:
    """The schedule's delays in order, forever (the last step repeats)."""
    steps = parse_backoff(schedule)
    for delay, count in steps:
        yield from repeat(delay) if count is None else repeat(delay, count)
    yield from repeat(steps[-1][0])
