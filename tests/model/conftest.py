"""Small networks for the model tests: depth 18 at width 8 runs a 112x112 clip in milliseconds."""

from collections.abc import Callable

import pytest

from model.manifest import ArchConfig


@pytest.fixture
def tiny() -> Callable[..., ArchConfig]:
    """Makes a CPU-test-sized ArchConfig; keyword arguments override its fields."""

    def make(**changes: object) -> ArchConfig:
        return ArchConfig(**({"depth": 18, "width": 8, "num_classes": 5, "frames": 64} | changes))

    return make
