"""The shared training loop and the stage configs, on a toy module so each test takes a moment."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.utils.data import TensorDataset

from model.clip import ClipSpec
from model.manifest import ArchConfig
from model.precision import cpu_has_native_bf16, mixed_precision
from training.clips import ClipDataset, collate_clips
from training.config import (
    DataConfig,
    Multigrid,
    OptimConfig,
    RunConfig,
    StageConfig,
    TeacherConfig,
    load_config,
)
from training.datasets import VideoItem
from training.engine import (
    TIMED_STEPS,
    CachedClips,
    Diverged,
    Trainer,
    budget_steps,
    gradient_error,
    init_runtime,
    load_checkpoint,
)

CONFIGS = Path(__file__).parents[2] / "configs"


class Stop(Exception):
    """Stands for a killed process in the middle of an epoch."""


def toy_config(out: Path, batch_size: int = 2, **optim) -> StageConfig:
    """fp32 unless `amp=True`: under bf16 a native-bf16 CPU first tries one micro-batch in each
    precision, two more calls of the loss that the tests counting batches would count."""
    return StageConfig(
        arch=ArchConfig(),
        run=RunConfig(output_dir=out, log_every=1, checkpoint_every=1),
        data=DataConfig(batch_size=batch_size),
        optim=OptimConfig(
            **{"epochs": 2, "lr": 0.05, "schedule": "constant", "amp": False, **optim}
        ),
    )


def toy_data() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(12, 3, generator=generator), torch.arange(12))


def fit(
    config: StageConfig,
    seen: list[list[int]],
    stop_after: int | None = None,
    validate=None,
    test=None,
):
    """Train a fresh Linear(3, 1) (same init every time) and record each batch's sample ids."""

    def loss_fn(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        x, ids = batch
        if stop_after is not None and len(seen) == stop_after:
            raise Stop
        seen.append(ids.tolist())
        loss = model(x).sub(1).pow(2).mean()
        return loss, {"double": 2 * loss}

    torch.manual_seed(0)
    trainer = Trainer("toy", nn.Linear(3, 1), config, init_runtime("cpu"), {"note": "toy"})
    return trainer, trainer.fit(toy_data(), loss_fn, validate, test)


def metric_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_loader_workers_keep_their_decoded_videos_from_epoch_to_epoch(
    tmp_path: Path, make_video
) -> None:
    """With `data.workers` the clips are cut in worker processes, whose caches must outlive an
    epoch: a worker started afresh each epoch decoded every video again (3x an epoch's time)."""
    decodes = tmp_path / "decodes"

    class Counted(ClipDataset):
        def frames(self, index: int) -> torch.Tensor:
            with decodes.open("a") as log:  # written from the worker process
                log.write(f"{index}\n")
            return super().frames(index)

    class CountedCache(CachedClips, Counted):
        pass

    videos = [VideoItem(make_video(tmp_path / f"v{i}.mp4", frames=10), i % 2) for i in range(4)]
    spec = ClipSpec(frames=4, crop=16, resize=(21, 16), fps=12.0, normalize="per_clip")
    dataset = CountedCache(videos, spec, train=True)
    config = toy_config(tmp_path / "out", epochs=3).model_copy(
        update={"data": DataConfig(batch_size=2, workers=1)}
    )

    def loss_fn(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        frames, _ = batch
        return model(frames.mean((2, 3, 4))).pow(2).mean(), {}

    Trainer("toy", nn.Linear(3, 1), config, init_runtime("cpu"), {}).fit(
        dataset, loss_fn, collate_fn=collate_clips
    )
    assert sorted(decodes.read_text().split()) == ["0", "1", "2", "3"]


def test_resume_mid_epoch_replays_exactly_the_remaining_batches(tmp_path: Path) -> None:
    uninterrupted: list[list[int]] = []
    fit(toy_config(tmp_path / "whole"), uninterrupted)

    seen: list[list[int]] = []
    with pytest.raises(Stop):  # 6 batches per epoch: dies at the 3rd batch of the 2nd epoch
        fit(toy_config(tmp_path / "cut"), seen, stop_after=8)
    checkpoint = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (checkpoint["epoch"], checkpoint["batch"], checkpoint["step"]) == (1, 2, 8)

    trainer, result = fit(toy_config(tmp_path / "cut"), seen)
    assert seen == uninterrupted  # same order, nothing trained twice, nothing skipped
    assert trainer.step == 12 and trainer.epoch == 2
    assert [
        line["step"] for line in metric_lines(tmp_path / "cut") if line["split"] == "train"
    ] == [*range(1, 13)]
    whole = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    resumed = load_checkpoint(result.last)["model"]
    assert all(torch.allclose(whole[key], resumed[key]) for key in whole)


def test_gradient_accumulation_matches_the_large_batch(tmp_path: Path) -> None:
    seen_small: list[list[int]] = []
    # In fp32: under bf16, two half-batch sums round differently from one whole-batch sum.
    trainer, small = fit(toy_config(tmp_path / "acc", effective_batch=4), seen_small)
    assert trainer.accumulate == 2 and trainer.step == 6  # 12 clips / 4 per step x 2 epochs
    assert all(len(ids) == 2 for ids in seen_small)
    trainer, large = fit(toy_config(tmp_path / "big", batch_size=4), [])
    assert trainer.accumulate == 1 and trainer.step == 6
    a, b = load_checkpoint(small.last)["model"], load_checkpoint(large.last)["model"]
    assert all(torch.allclose(a[key], b[key], atol=1e-6) for key in a)


def test_effective_batch_must_be_reachable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="effective_batch 5"):
        fit(toy_config(tmp_path, effective_batch=5), [])


def test_best_checkpoint_follows_validation_and_plateau_lowers_the_rate(tmp_path: Path) -> None:
    scores = iter([0.5, 0.9, 0.7, 0.6])
    config = toy_config(tmp_path, epochs=4, schedule="plateau", patience=1, factor=0.5)
    trainer, result = fit(config, [], validate=lambda module: {"top1": next(scores)})
    best, last = load_checkpoint(result.best), load_checkpoint(result.last)
    assert (
        best["epoch"] == 2 and result.metrics == {"top1": 0.9} and trainer.metrics == {"top1": 0.6}
    )
    assert best["meta"] == {"note": "toy"} and best["stage"] == "toy"
    # two epochs without beating 0.9 (patience 1) halve the rate once
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.025)
    lines = metric_lines(tmp_path)
    assert [line["top1"] for line in lines if line["split"] == "val"] == [0.5, 0.9, 0.7, 0.6]
    train = [line for line in lines if line["split"] == "train"]
    assert all(line["double"] == pytest.approx(2 * line["loss"]) for line in train)
    assert any((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_the_test_list_is_scored_once_at_the_end_on_the_selected_weights(tmp_path: Path) -> None:
    validation = iter([0.5, 0.9, 0.7])
    events: list[str] = []
    tested: list[torch.Tensor] = []

    def validate(module: nn.Module) -> dict[str, float]:
        events.append("val")
        return {"top1": next(validation)}

    def test(module: nn.Module) -> dict[str, float]:
        events.append("test")
        tested.append(module.weight.detach().clone())
        return {"top1": 0.25}

    trainer, result = fit(toy_config(tmp_path, epochs=3), [], validate=validate, test=test)
    best, last = load_checkpoint(result.best), load_checkpoint(result.last)
    assert events == ["val", "val", "val", "test"]  # never during training, once after it
    assert best["epoch"] == 2 and result.metrics == {"top1": 0.9}
    assert torch.equal(tested[0], best["model"]["weight"])  # the selected epoch's weights
    assert not torch.equal(best["model"]["weight"], last["model"]["weight"])
    assert result.test == {"top1": 0.25} and trainer.metrics == {"top1": 0.7}
    scored = [line for line in metric_lines(tmp_path) if line["split"] != "train"]
    assert [line["split"] for line in scored] == ["val", "val", "val", "test"]
    assert scored[-1]["top1"] == 0.25


def test_onecycle_schedule_warms_up_then_anneals(tmp_path: Path) -> None:
    fit(toy_config(tmp_path, epochs=2, schedule="onecycle", warmup=0.25), [])
    rates = [line["lr"] for line in metric_lines(tmp_path) if line["split"] == "train"]
    peak = rates.index(max(rates))
    assert 0 < peak < len(rates) - 1 and max(rates) == pytest.approx(0.05, rel=0.1)
    assert rates[-1] < rates[0] < max(rates)


def test_a_one_step_warm_up_trains(tmp_path: Path) -> None:
    """Six steps with warm-up 1/6: PyTorch's OneCycleLR alone divides by zero there."""
    trainer, _ = fit(toy_config(tmp_path, epochs=1, schedule="onecycle", warmup=1 / 6), [])
    rates = [line["lr"] for line in metric_lines(tmp_path) if line["split"] == "train"]
    assert trainer.step == 6 and max(rates) == pytest.approx(0.05, rel=0.1) and rates[-1] < 0.05


def test_stage_configs_load_with_overrides() -> None:
    config = load_config(
        TeacherConfig,
        CONFIGS / "cpu-small" / "teacher.yaml",
        ["optim.epochs=3", "arch.fusion=sum", "data.clip.crop=32", "data.root=/data/arid"],
    )
    assert config.optim.epochs == 3 and config.arch.fusion == "sum"
    assert config.data.clip.crop == 32 and config.data.root == Path("/data/arid")
    with pytest.raises(ValidationError, match="fusion"):
        load_config(TeacherConfig, CONFIGS / "cpu-small" / "teacher.yaml", ["arch.fusion=max"])
    with pytest.raises(ValidationError, match="epoch"):
        load_config(TeacherConfig, CONFIGS / "cpu-small" / "teacher.yaml", ["optim.epoch=3"])
    for scales in ("[1.5]", "[0]", "[]"):  # crops inside the frame; at least one scale
        with pytest.raises(ValidationError, match="scales"):
            load_config(
                TeacherConfig, CONFIGS / "cpu-small" / "teacher.yaml", [f"data.scales={scales}"]
            )
    with pytest.raises(ValueError, match="key=value"):
        load_config(TeacherConfig, CONFIGS / "cpu-small" / "teacher.yaml", ["optim.epochs"])


def test_unreadable_checkpoints_are_refused_with_the_reason(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read as a checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="is not a lumos-checkpoint/1 checkpoint"):
        load_checkpoint(foreign)


def test_resuming_refuses_a_checkpoint_of_another_recipe(tmp_path: Path) -> None:
    fit(toy_config(tmp_path, epochs=1), [])
    fit(toy_config(tmp_path, epochs=2), [])  # more epochs of the same recipe continue
    with pytest.raises(ValueError, match="another config"):
        fit(toy_config(tmp_path, epochs=3, lr=0.01), [])


@pytest.mark.parametrize("amp", [True, False])
def test_cpu_steps_run_in_bf16_only_where_the_cpu_computes_it(tmp_path: Path, amp: bool) -> None:
    dtypes: list[torch.dtype] = []

    def loss_fn(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        output = model(batch[0])
        dtypes.append(output.dtype)
        return output.float().sub(1).pow(2).mean(), {}

    trainer = Trainer(
        "toy", nn.Linear(3, 1), toy_config(tmp_path, amp=amp), init_runtime("cpu"), {}
    )
    trainer.fit(toy_data(), loss_fn)
    # Emulated bf16 would make training many times slower, so it is used only where it is native
    # (after one micro-batch in each precision has shown that bf16 gets the gradients right).
    expected = torch.bfloat16 if amp and cpu_has_native_bf16() else torch.float32
    trained = dtypes[2:] if expected == torch.bfloat16 else dtypes
    assert set(trained) == {expected}


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="needs a CPU with native bf16")
def test_bf16_that_gets_the_gradients_wrong_trains_in_fp32(tmp_path: Path, caplog) -> None:
    dtypes: list[torch.dtype] = []

    def loss_fn(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        output = model(batch[0])
        dtypes.append(output.dtype)
        broken = torch.inf if torch.is_autocast_enabled("cpu") else 1.0  # a broken bf16 kernel
        return output.float().sub(1).pow(2).mean() * broken, {}

    config = toy_config(tmp_path, amp=True)
    trainer = Trainer("toy", nn.Linear(3, 1), config, init_runtime("cpu"), {})
    trainer.fit(toy_data(), loss_fn)  # no Diverged: every step is taken, in fp32
    assert dtypes[:2] == [torch.float32, torch.bfloat16]
    assert set(dtypes[2:]) == {torch.float32} and len(dtypes) > 2
    assert "bf16 gradients of this network are wrong on this CPU" in caplog.text
    assert gradient_error([torch.ones(3)], [torch.tensor([1.0, 1.01, 0.99])]) < 0.02
    assert gradient_error([torch.ones(3)], [torch.tensor([1.0, 1e21, 1.0])]) > 1e20


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_steps_run_under_autocast_and_save_the_same_checkpoint(tmp_path: Path) -> None:
    seen: list[tuple[torch.dtype, str]] = []

    def loss_fn(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        output = model(batch[0])
        seen.append((output.dtype, batch[0].device.type))
        return output.float().sub(1).pow(2).mean(), {}

    trainer = Trainer(
        "toy", nn.Linear(3, 1), toy_config(tmp_path, amp=True), init_runtime("cuda"), {}
    )
    result = trainer.fit(toy_data(), loss_fn)
    assert set(seen) == {(mixed_precision(torch.device("cuda")), "cuda")}
    checkpoint = load_checkpoint(result.last)  # readable where there is no GPU
    assert checkpoint["model"]["weight"].device.type == "cpu"
    assert checkpoint["epoch"] == 2 and checkpoint["step"] == 12


def test_steps_with_non_finite_gradients_are_skipped_and_a_run_of_them_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def poisoned(every: int):
        calls = []

        def loss_fn(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
            x, _ = batch
            calls.append(1)
            loss = model(x).sub(1).pow(2).mean()
            return (loss * torch.nan if len(calls) % every == 0 else loss), {}

        return loss_fn

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    trainer = Trainer("toy", model, toy_config(tmp_path / "some"), init_runtime("cpu"), {})
    trainer.fit(toy_data(), poisoned(every=3))  # 12 steps, 4 of them NaN
    assert all(p.isfinite().all() for p in model.parameters())
    assert "epoch 1: 2 of 6 steps skipped" in caplog.text

    trainer = Trainer("toy", nn.Linear(3, 1), toy_config(tmp_path / "all"), init_runtime("cpu"), {})
    with pytest.raises(Diverged, match="every step's gradients were not finite"):
        trainer.fit(toy_data(), poisoned(every=1))


def test_a_budget_is_the_steps_that_fit_in_it() -> None:
    assert budget_steps(10.0, 3.0) == 3 and budget_steps(9.0, 3.0) == 3
    assert budget_steps(0.1, 5.0) == 1  # a budget below one step still trains one
    with pytest.raises(ValueError, match="must be > 0"):
        budget_steps(10.0, 0.0)


def test_a_budgeted_run_times_its_step_once_and_trains_exactly_that_many_steps(
    tmp_path: Path,
) -> None:
    seen: list[list[int]] = []
    trainer, result = fit(toy_config(tmp_path / "budget", budget_s=0.02), seen)
    plan = result.plan
    assert plan.seconds_per_step and plan.steps == budget_steps(0.02, plan.seconds_per_step)
    assert trainer.step == plan.steps and trainer.epochs == -(-plan.steps // 6)
    assert load_checkpoint(result.last)["plan"] == {
        "steps": plan.steps,
        "seconds_per_step": plan.seconds_per_step,
    }
    lines = metric_lines(tmp_path / "budget")
    assert lines[0]["split"] == "plan" and lines[0]["steps"] == plan.steps
    assert lines[0]["budget_s"] == 0.02
    # The timed steps left no trace: the run's steps are those of a run given epochs instead.
    epochs = toy_config(tmp_path / "epochs", epochs=trainer.epochs)
    plain: list[list[int]] = []
    fit(epochs, plain)
    assert seen[1 + TIMED_STEPS :] == plain[: plan.steps]  # after the timed batches

    def train_losses(lines: list[dict]) -> list[float]:
        return [line["loss"] for line in lines if line["split"] == "train"]

    losses = train_losses(metric_lines(tmp_path / "epochs"))[: plan.steps]
    assert train_losses(lines) == losses


def test_a_multigrid_run_cycles_its_early_steps_through_smaller_frames(tmp_path: Path) -> None:
    frames = torch.randint(0, 256, (12, 2, 16, 16, 3), dtype=torch.uint8)
    sides: list[int] = []

    def loss_fn(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        clips, _ = batch
        assert clips.shape[-3] == clips.shape[-2]
        sides.append(clips.shape[-2])
        return model(clips.float().mean(dim=(1, 2, 3))).pow(2).mean(), {}

    def run(out: Path, **optim) -> Trainer:
        base = toy_config(out, **optim)
        grid = Multigrid(sizes=(8, 12), until=0.5)
        config = base.model_copy(update={"data": DataConfig(batch_size=2, multigrid=grid)})
        trainer = Trainer("toy", nn.Linear(3, 1), config, init_runtime("cpu"), {})
        trainer.fit(TensorDataset(frames, torch.arange(12)), loss_fn)
        return trainer

    run(tmp_path / "epochs")  # 2 epochs of 6 steps: the first half cycles 8, 12; then 16
    assert sides == [8, 12] * 3 + [16] * 6
    sides.clear()
    trainer = run(tmp_path / "budget", budget_s=0.05)
    steps = trainer.plan.steps
    timed = 3 * (1 + TIMED_STEPS)  # a step at each size is timed: full, 8 and 12
    assert sides[:timed] == [side for side in (16, 8, 12) for _ in range(1 + TIMED_STEPS)]
    assert sides[timed:] == [
        Multigrid(sizes=(8, 12), until=0.5).size(step, steps) or 16 for step in range(steps)
    ]


@pytest.mark.parametrize(("until", "candidates"), [(0.5, [3, 4]), (1.0, [4])])
def test_only_epochs_that_end_at_full_size_are_scored_and_selected(
    tmp_path: Path, until: float, candidates: list[int]
) -> None:
    """A multigrid epoch's network (its BatchNorm statistics from smaller frames) is not the one
    that would be served: it is not validated and cannot become best.pt, by validation or by
    training loss (here the smaller frames' loss is the lower); the run's last epoch always can."""
    frames = torch.randint(0, 256, (12, 2, 16, 16, 3), dtype=torch.uint8)
    scored: list[int] = []

    def loss_fn(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        clips, _ = batch
        return model(clips.float().mean(dim=(1, 2, 3))).mul(0).mean() + clips.shape[-2], {}

    def validate(module: nn.Module) -> dict[str, float]:
        scored.append(trainer.epoch)
        return {"top1": 1 / trainer.epoch}  # falling: the first scored epoch is the best

    grid = Multigrid(sizes=(8, 12), until=until)
    base = toy_config(tmp_path, epochs=4)  # 6 steps an epoch
    config = base.model_copy(update={"data": DataConfig(batch_size=2, multigrid=grid)})
    for scorer in (validate, None):
        trainer = Trainer("toy", nn.Linear(3, 1), config, init_runtime("cpu"), {})
        result = trainer.fit(TensorDataset(frames, torch.arange(12)), loss_fn, scorer)
        assert load_checkpoint(result.best)["epoch"] == candidates[0]
        shutil.rmtree(tmp_path / "checkpoints")
    assert scored == candidates
    splits = [line["split"] for line in metric_lines(tmp_path) if line["split"] != "train"]
    assert splits[:4] == ["epoch"] * (4 - len(candidates)) + ["val"] * len(candidates)


def test_a_multigrid_step_time_is_the_mean_over_its_schedule() -> None:
    grid = Multigrid(sizes=(8, 12), until=0.5)
    assert grid.seconds_per_step({None: 1.0, 8: 0.2, 12: 0.4}) == pytest.approx(0.65)
    assert Multigrid().seconds_per_step({None: 1.0}) == 1.0
    assert [Multigrid().size(step, 4) for step in range(4)] == [None] * 4
    assert [grid.size(step, 5) for step in range(5)] == [8, 12, 8, None, None]


def test_a_budgeted_run_resumes_with_the_step_count_it_started_with(tmp_path: Path) -> None:
    config = toy_config(tmp_path, budget_s=0.1)
    with pytest.raises(Stop):  # dies after the timing (4 batches) and 2 training steps
        fit(config, [], stop_after=1 + TIMED_STEPS + 2)
    started = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert started["step"] == 2 and started["plan"]["steps"] > 2
    seen: list[list[int]] = []
    trainer, result = fit(config, seen)
    assert result.plan.steps == started["plan"]["steps"]  # not timed again
    assert len(seen) == result.plan.steps - 2 and trainer.step == result.plan.steps
    assert [line["split"] for line in metric_lines(tmp_path)].count("plan") == 1
    with pytest.raises(ValueError, match="another config"):  # a budget is part of the recipe
        fit(toy_config(tmp_path, budget_s=0.2), [])
