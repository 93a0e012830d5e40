"""Clips and metric readings for the service tests."""

import time
import uuid

import numpy as np
from prometheus_client import REGISTRY

from service.clips import Clip, Integrity
from service.illumination import Illumination


def make_clip(
    stream: str = "cam-1",
    seq: int = 0,
    live: bool = True,
    end: float | None = None,
    frames: np.ndarray | None = None,
    **changes,
) -> Clip:
    """A clip with distinguishable pixels (every byte = seq) unless `frames` is given."""
    end = time.time() if end is None else end
    fields = dict(
        id=uuid.uuid4().hex,
        stream=stream,
        seq=seq,
        start=end - 0.5,
        end=end,
        timestamps=(0.0, 0.5),
        live=live,
        integrity=Integrity(dropped=2, max_gap=0.25, reconnect=True),
        illumination=Illumination(12.5, 3.0, 30.0, 2.25),
        frames=np.full((2, 4, 4, 3), seq % 256, np.uint8) if frames is None else frames,
    )
    return Clip(**(fields | changes))


def metric(name: str, **labels: str) -> float:
    """The current value of a sample of this process's metrics (0 when never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
