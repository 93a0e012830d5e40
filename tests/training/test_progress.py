"""The typed progress file: what the engine writes is what the job runner reads, diverged losses
included."""

import math

from training.progress import PROGRESS, StageProgress, read_progress, write_progress


def test_progress_round_trips_with_diverged_losses(tmp_path):
    assert read_progress(tmp_path / PROGRESS) is None  # not written yet
    metrics = {"train": {"loss": math.nan, "lr": 1e-5}, "epoch": {"loss": math.inf}}
    write_progress(tmp_path, StageProgress(stage="ssl", epochs=3, done=1, step=7, metrics=metrics))
    read = read_progress(tmp_path / PROGRESS)
    assert read is not None and (read.stage, read.epochs, read.done, read.step) == ("ssl", 3, 1, 7)
    assert math.isnan(read.metrics["train"]["loss"]) and read.metrics["epoch"]["loss"] == math.inf
    assert [p.name for p in tmp_path.iterdir()] == [PROGRESS]  # no temporary file left
