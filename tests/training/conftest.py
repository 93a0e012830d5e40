"""A tiny generated benchmark the training tests share."""

from pathlib import Path

import pytest

from training.synth.benchmark import SynthConfig, write_benchmark


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One training and test clip and two validation clips a class, 12-16 frames of 64 x 48."""
    root = tmp_path_factory.mktemp("synth")
    write_benchmark(
        SynthConfig(
            out=root,
            clips_per_class=1,
            val_clips_per_class=2,  # not the test list's size, so the logs show which was scored
            test_clips_per_class=1,
            frames=(12, 16),
            size=(64, 48),
            workers=1,
        )
    )
    return root
