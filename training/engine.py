"""The loop every training stage shares, and the process it runs in.

The three stages differ only in their loss, so the loop lives here once: seeding, device and
torchrun process group, AdamW with its schedule over a number of optimizer steps (the epochs',
or a compute budget's, timed once), multigrid steps on scaled-down batches
(`training.config.Multigrid`), gradient accumulation, mixed precision (on CUDA and on CPUs
with native bf16), checkpoints that resume at the optimizer step they were written at, model
selection on the validation list and one score on the test list, and metrics as JSON lines,
TensorBoard events and a progress bar. A stage hands `Trainer.fit` a data set, a loss
function and its scorers.
"""

import copy
import itertools
import json
import logging
import math
import os
import pickle
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from model.artifact import load_locator, locator_cut
from model.clip import EVEN_ODDS, ClipSpec
from model.ig65m import import_backbone
from model.manifest import ArchConfig
from model.networks import Student, Teacher, build_network
from model.precision import mixed_precision, roomy_signal_stack
from model.state import load_strict
from training.clips import ClipDataset, scale_batch
from training.config import DataConfig, RunConfig, StageConfig
from training.progress import StageProgress, write_progress
from training.splits import Subset, recipe_list

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """Every step of an epoch had non-finite gradients: training cannot go on."""


CHECKPOINT_FORMAT = "lumos-checkpoint/1"

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""(trainable module, batch on the device) -> (loss, its named parts for the logs)."""
ValidateFn = Callable[[nn.Module], dict[str, float]]
"""Scores the trainable module (unwrapped, eval mode, no grad) on one list of videos: the
validation list after each epoch, the test list once at the end."""


@dataclass(frozen=True)
class TrainingRuntime:
    """This process's device and its place among torchrun's processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_runtime(device: str = "auto") -> TrainingRuntime:
    """Pick the device and, under torchrun, join the process group (NCCL on GPU, gloo on CPU)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    target = torch.device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return TrainingRuntime(target, rank, world_size)


def memory_format(run: RunConfig) -> torch.memory_format:
    return torch.channels_last_3d if run.channels_last else torch.preserve_format


def close_runtime() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested tuple/list/dict) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


class RawClipSpec(ClipSpec):
    """A clip spec whose `to_input` keeps the uint8 frames.

    ClipDataset ends every item with `spec.to_input`; with this spec it yields uint8 clips, which
    the recipes normalise on the training device with the real spec (a quarter of the bytes to
    move) after the teacher has enhanced them.
    """

    def to_input(self, frames: torch.Tensor) -> torch.Tensor:
        return frames


_kept: dict[tuple, torch.Tensor] = {}


def remember(key: tuple, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`make()`'s result, computed once per key for the life of the process."""
    if key not in _kept:
        _kept[key] = make()
    return _kept[key]


class CachedClips(ClipDataset):
    """A ClipDataset whose decoded videos are kept for the whole process and shared by every data
    set over the same files, so the stages of a pipeline or an ablation decode each video once
    (1,430 benchmark videos at 86x64 take about 1 GB)."""

    def frames(self, index: int) -> torch.Tensor:
        return remember(self.key(index), lambda: super(CachedClips, self).frames(index))

    def key(self, index: int) -> tuple:
        """What a video's cached frames depend on: the file, the decode size and how many of
        its frames each one is the mean of (`ClipSpec.integrate`)."""
        window = self.stride if self.spec.integrate else 1
        return self.items[index].path, self.spec.decode_size, window


def stage_spec(data: DataConfig) -> ClipSpec:
    """The clip spec a stage feeds its network: `data.clip`, with the learned localiser of
    `data.locator` attached where the spec draws its focus square with one."""
    if not data.clip.locate:
        return data.clip
    if data.locator is None:
        raise ValueError(
            "data.clip.locate draws the focus square with a learned localiser: set data.locator "
            "to a locate stage's locator.safetensors (`lumos train pipeline` sets its own)"
        )
    if (learnt_on := locator_cut(data.locator)) != data.cut():
        raise ValueError(
            f"the localiser {data.locator} learnt on clips cut as {learnt_on or 'it does not say'}"
            f", this stage cuts them as {data.cut()}: train it on this stage's clips (the same "
            "data.clip frames, crop, resize, fps and integrate, and data.stride)"
        )
    return data.clip.with_locator(load_locator(data.locator))


def training_spec(spec: ClipSpec) -> ClipSpec:
    """The clip spec a stage's loss cuts its training clips with: `spec` with the focus square
    drawn at even odds, looser than the `locate_threshold` the spec scores and serves with.
    Squares drawn tighter in training as well trained no better students; served tighter, the
    same students read the shifted validation sets about 3 points better (MODEL_CARD.md, "How
    the recipe was chosen")."""
    return spec.model_copy(update={"locate_threshold": EVEN_ODDS})


def clip_dataset(
    data: DataConfig,
    subset: Subset,
    train: bool,
    kind: type[CachedClips] = CachedClips,
    **options: Any,
) -> tuple[ClipDataset, tuple[str, ...]]:
    """uint8 clips of one of the recipe's lists of the configured split (`training.splits`), and
    the data set's class names."""
    videos = recipe_list(
        data.root, data.split, subset, data.validation_fraction, data.validation_seed
    )
    spec = RawClipSpec(**data.clip.model_dump())
    kind = kind if data.cache else ClipDataset
    if train:
        options = {"photometric": data.photometric, **options}
    dataset = kind(videos.items, spec, train, stride=data.stride, scales=data.scales, **options)
    return dataset, videos.classes


def build_stage_network(config: StageConfig, arch: ArchConfig) -> Student | Teacher:
    """A stage's network; its backbone starts from `pretrained` weights and then from the
    backbone of the `init` checkpoint, when the config names them."""
    network = build_network(arch)
    if config.pretrained:
        import_backbone(network.backbone, config.pretrained)
    if config.init:
        state = load_checkpoint(config.init)["model"]
        prefix = "backbone."
        backbone = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        load_strict(network.backbone, backbone, str(config.init))
    return network


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by `Trainer`, read without unpickling arbitrary objects."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(f"{path} cannot be read as a checkpoint: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return checkpoint


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled by seed and epoch) that can skip the clips a resumed run has
    already trained on in its current epoch, so resuming replays exactly the remaining batches."""

    skip = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return self.num_samples - self.skip


class MetricLog:
    """metrics.jsonl (one JSON object per line), TensorBoard events and the stage's typed
    progress file (`training.progress`), on the main process."""

    def __init__(self, directory: Path, stage: str, epochs: int, done: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.stage = stage
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.file = (directory / "metrics.jsonl").open("a")
        self.board = SummaryWriter(str(directory / "tensorboard"))
        self.progress = StageProgress(stage=stage, epochs=epochs, done=done)
        write_progress(directory, self.progress)

    def write(self, split: str, step: int, epoch: int, values: dict[str, float]) -> None:
        record = {"stage": self.stage, "split": split, "epoch": epoch, "step": step, **values}
        self.file.write(json.dumps({"time": time.time(), **record}) + "\n")
        self.file.flush()
        for name, value in values.items():
            self.board.add_scalar(f"{split}/{name}", value, step)
        done = self.progress.done if split == "train" else max(self.progress.done, epoch + 1)
        metrics = {**self.progress.metrics, split: values}
        self.progress = StageProgress(
            stage=self.stage, epochs=self.progress.epochs, done=done, step=step, metrics=metrics
        )
        write_progress(self.directory, self.progress)

    def close(self) -> None:
        self.file.close()
        self.board.close()


TIMED_STEPS = 3
"""Optimizer steps timed (after one untimed) to turn a budget into a step count; their median."""


BF16_TOLERANCE = 0.1
"""Largest relative error of a bf16 gradient tensor against fp32 that counts as right: bf16 keeps
8 bits of mantissa, so right gradients differ by a few percent, broken kernels by orders of
magnitude (see `Trainer._check_precision`)."""


def gradient_error(reference: list[torch.Tensor], candidate: list[torch.Tensor]) -> float:
    """The largest relative error of any tensor of `candidate` against `reference` (in norm);
    infinite where a candidate value is not finite."""
    worst = 0.0
    for ref, other in zip(reference, candidate, strict=True):
        if not torch.isfinite(other).all():
            return math.inf
        scale = float(ref.float().norm()) or 1.0
        worst = max(worst, float((other.float() - ref.float()).norm()) / scale)
    return worst


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps a run takes, and, for a budgeted one, the step time it came from."""

    steps: int
    seconds_per_step: float | None = None


def budget_steps(budget_s: float, seconds_per_step: float) -> int:
    """The optimizer steps that fit in `budget_s` seconds at `seconds_per_step`; at least one."""
    if not (budget_s > 0 and seconds_per_step > 0):
        raise ValueError(f"budget {budget_s} s at {seconds_per_step} s a step: both must be > 0")
    return max(1, math.floor(budget_s / seconds_per_step))


@dataclass
class FitResult:
    best: Path
    """The selected checkpoint: the best monitored value (validation top-1, else lowest training
    loss)."""
    last: Path
    metrics: dict[str, float]
    """The selected epoch's validation metrics (or its training loss)."""
    test: dict[str, float]
    """The selected checkpoint's test metrics, scored once after the last epoch; empty when the
    stage was given no test scorer."""
    plan: StepPlan


class Trainer:
    """Trains one module with AdamW; `fit` runs the epochs and writes the checkpoints.

    `meta` (e.g. the architecture and labels) is stored in every checkpoint so the next stage and
    the exporter can rebuild the network without the config that produced it.
    """

    def __init__(
        self,
        stage: str,
        module: nn.Module,
        config: StageConfig,
        runtime: TrainingRuntime,
        meta: dict[str, Any],
    ) -> None:
        self.stage, self.runtime, self.meta = stage, runtime, meta
        self.run, self.optim, self.data = config.run, config.optim, config.data
        self.config = config.model_dump(mode="json")
        per_step = self.data.batch_size * runtime.world_size
        effective = self.optim.effective_batch or per_step
        if effective % per_step:
            raise ValueError(
                f"effective_batch {effective} is not a multiple of batch_size x processes "
                f"({self.data.batch_size} x {runtime.world_size})"
            )
        self.accumulate = effective // per_step
        run, optim = config.run, config.optim
        self.module = module.to(runtime.device, memory_format=memory_format(run))
        self.model: nn.Module = (
            DistributedDataParallel(self.module) if runtime.distributed else self.module
        )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.module.parameters() if p.requires_grad],
            lr=optim.lr,
            weight_decay=optim.weight_decay,
        )
        self.amp_dtype = mixed_precision(runtime.device) if optim.amp else None
        if self.amp_dtype == torch.bfloat16 and runtime.device.type == "cpu":
            roomy_signal_stack()  # AMX kernels will run on this thread (model/precision.py)
        # Loss scaling guards fp16's narrow range; bf16 and fp32 need none.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.checkpoints = run.output_dir / "checkpoints"
        self.epoch = self.batch = self.step = 0
        self.plan = StepPlan(0)
        self.epochs = 0
        self.best: float | None = None
        self.best_metrics: dict[str, float] = {}
        self.metrics: dict[str, float] = {}

    def precision(self) -> Any:
        """Autocast context for forward passes: mixed precision where the device has it."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.runtime.device.type, dtype=self.amp_dtype)

    def _scheduler(self) -> Any:
        if self.optim.schedule == "onecycle":
            warmup = self.optim.warmup
            if warmup * self.plan.steps == 1:  # OneCycleLR would divide by zero: a budget's step
                warmup *= 1 + 1e-9  # count can make it so; the nudge changes no rate
            return torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer,
                max_lr=self.optim.lr,
                total_steps=self.plan.steps,
                pct_start=warmup,
            )
        if self.optim.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="max", factor=self.optim.factor, patience=self.optim.patience
            )
        return None

    def fit(
        self,
        dataset: Dataset,
        loss_fn: LossFn,
        validate: ValidateFn | None = None,
        test: ValidateFn | None = None,
        collate_fn: Callable | None = None,
    ) -> FitResult:
        """Train for `optim.epochs` epochs, or the steps of `optim.budget_s` (the last epoch cut
        short where they end), resuming from the last checkpoint when allowed.

        The monitored value is validation top-1 when `validate` is given, else minus the epoch's
        mean training loss; it drives ReduceLROnPlateau and the choice of `best.pt`, among the
        epochs that end at full size (`_candidate`). `test` is
        called once, after the last epoch, on the weights of `best.pt`: nothing it returns can
        reach a choice.
        """
        sampler = ResumableSampler(
            dataset,
            num_replicas=self.runtime.world_size,
            rank=self.runtime.rank,
            shuffle=True,
            seed=self.run.seed,
            drop_last=True,
        )
        loader = DataLoader(
            dataset,
            batch_size=self.data.batch_size,
            sampler=sampler,
            num_workers=self.data.workers,
            persistent_workers=self.data.workers > 0,
            collate_fn=collate_fn,
            drop_last=True,
            pin_memory=self.runtime.device.type == "cuda",
        )
        steps_per_epoch = sampler.num_samples // self.data.batch_size // self.accumulate
        if steps_per_epoch == 0:
            raise ValueError(
                f"{len(dataset)} training clips are too few for one optimizer step of "
                f"{self.data.batch_size * self.accumulate} clips per process"
            )
        last, best = self.checkpoints / "last.pt", self.checkpoints / "best.pt"
        checkpoint = load_checkpoint(last) if self.run.resume and last.exists() else None
        planned = checkpoint.get("plan") if checkpoint else None
        self._check_precision(loader, loss_fn)
        if self.optim.budget_s is None:
            self.plan = StepPlan(self.optim.epochs * steps_per_epoch)
        elif planned:  # timed once, when the run started
            self.plan = StepPlan(**planned)
        else:
            seconds = self._time_step(loader, loss_fn)
            self.plan = StepPlan(budget_steps(self.optim.budget_s, seconds), seconds)
        self.epochs = math.ceil(self.plan.steps / steps_per_epoch)
        scheduler = self._scheduler()
        if checkpoint:
            self._restore(checkpoint, scheduler)
        metric_log = (
            MetricLog(self.run.output_dir, self.stage, self.epochs, self.epoch)
            if self.runtime.is_main
            else None
        )
        if metric_log and self.optim.budget_s is not None and not planned:
            plan = {"budget_s": self.optim.budget_s, **asdict(self.plan)}
            metric_log.write("plan", 0, 0, plan)
            log.info("%s: %s", self.stage, plan)
        try:
            for epoch in range(self.epoch, self.epochs):
                self.epoch = epoch
                steps = min(steps_per_epoch, self.plan.steps - epoch * steps_per_epoch)
                epoch_loss = self._train_epoch(
                    loader, sampler, loss_fn, scheduler, steps, metric_log
                )
                self.epoch, self.batch = epoch + 1, 0
                candidate = self._candidate()
                scored = candidate and validate is not None
                self.metrics = self._score(validate) if scored else {"loss": epoch_loss}
                monitored = self.metrics["top1"] if scored else -epoch_loss
                plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
                if candidate and plateau:
                    scheduler.step(monitored)
                improved = candidate and (self.best is None or monitored > self.best)
                if improved:
                    self.best, self.best_metrics = monitored, self.metrics
                if metric_log:
                    split = "val" if scored else "epoch"
                    metric_log.write(split, self.step, epoch, self.metrics)
                    log.info("%s epoch %d/%d: %s", self.stage, epoch + 1, self.epochs, self.metrics)
                self._save(last, scheduler)
                if improved:
                    self._save(best, scheduler)
            tested = self._score(test, best) if test else {}
            if metric_log and test:
                metric_log.write("test", self.step, self.epoch - 1, tested)
                log.info("%s test, the selected epoch's weights: %s", self.stage, tested)
        finally:
            if metric_log:
                metric_log.close()
        return FitResult(best, last, self.best_metrics, tested, self.plan)

    def _candidate(self) -> bool:
        """Whether the epoch just trained may become `best.pt`: the run's last, or one whose last
        step saw full-size frames. A multigrid epoch's network (its BatchNorm statistics from
        smaller frames) is not what would be served, so it is neither scored nor selected; the
        validation passes saved are time for more steps."""
        full_size = self.data.multigrid.size(self.step - 1, self.plan.steps) is None
        return full_size or self.epoch == self.epochs

    @contextmanager
    def _rehearsal(self, loader: DataLoader) -> Iterator[list]:
        """This run's first batches to try steps on before training (drawn, so decoded, before
        anything is timed). The weights, optimizer and random state are put back afterwards, so
        the run trains as if nothing had been tried."""
        saved = copy.deepcopy(
            (self.module.state_dict(), self.optimizer.state_dict(), self.scaler.state_dict())
        )
        cuda = self.runtime.device.type == "cuda"
        rng = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else None)
        batches = [b for b in itertools.islice(loader, self.accumulate) if b is not None]
        if not batches:
            raise ValueError(f"{self.stage}: no readable training clips to try a step on")
        self.model.train()
        try:
            yield batches
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            self.module.load_state_dict(saved[0])
            self.optimizer.load_state_dict(saved[1])
            self.scaler.load_state_dict(saved[2])
            torch.set_rng_state(rng[0])
            if cuda:
                torch.cuda.set_rng_state_all(rng[1])

    def _time_step(self, loader: DataLoader, loss_fn: LossFn) -> float:
        """Median seconds of this run's optimizer step, after one untimed step (a multigrid run's
        mean over its sizes); every process takes the main one's time, so all train the same
        number of steps."""
        grid, detail = self.data.multigrid, self.data.clip.detail
        with self._rehearsal(loader) as batches:
            by_size = {
                size: self._median_step(
                    loss_fn, [scale_batch(b, size * detail) if size else b for b in batches]
                )
                for size in (None, *grid.sizes)
            }
        seconds = [grid.seconds_per_step(by_size)]
        if self.runtime.distributed:
            dist.broadcast_object_list(seconds, src=0)
        return seconds[0]

    def _median_step(self, loss_fn: LossFn, batches: list) -> float:
        cuda = self.runtime.device.type == "cuda"
        times = []
        for _ in range(1 + TIMED_STEPS):
            started = time.perf_counter()
            for index, batch in enumerate(batches):
                self._backward(loss_fn, batch, sync=index == len(batches) - 1)
            self._optimizer_step()
            if cuda:
                torch.cuda.synchronize(self.runtime.device)
            times.append(time.perf_counter() - started)
        return statistics.median(times[1:]) * self.accumulate / len(batches)

    def _check_precision(self, loader: DataLoader, loss_fn: LossFn) -> None:
        """Keep bf16 on a CPU only where its kernels get this network's gradients right.

        On a 2-core AMD EPYC with AVX-512 BF16 and no AMX (PyTorch 2.14.1), oneDNN's bf16 weight
        gradient of a (3, 1, 1) convolution over two frames came out infinite or about 1e21:
        every step of a small student was skipped (`Diverged`), or worse, taken. So one
        micro-batch's gradients are computed in fp32 and in bf16 from the same random state, and
        where the bf16 ones are not finite or off by more than `BF16_TOLERANCE`, the run trains
        in fp32 and says why."""
        if self.amp_dtype != torch.bfloat16 or self.runtime.device.type != "cpu":
            return
        params = [p for p in self.module.parameters() if p.requires_grad]
        gradients = []
        with self._rehearsal(loader) as batches:
            state = torch.get_rng_state()
            for dtype in (None, torch.bfloat16):
                self.amp_dtype = dtype
                torch.set_rng_state(state)
                self.optimizer.zero_grad(set_to_none=True)
                self._backward(loss_fn, batches[0], sync=True)
                gradients.append([p.grad.clone() for p in params if p.grad is not None])
        error = [gradient_error(*gradients)]
        if self.runtime.distributed:
            dist.broadcast_object_list(error, src=0)
        if error[0] <= BF16_TOLERANCE:
            return
        self.amp_dtype = None
        log.warning(
            "%s: bf16 gradients of this network are wrong on this CPU (relative error %.3g > "
            "%.2g against fp32): training in fp32",
            self.stage,
            error[0],
            BF16_TOLERANCE,
        )

    def _backward(self, loss_fn: LossFn, batch: Any, sync: bool) -> tuple[torch.Tensor, dict]:
        """One micro-batch's loss and its gradients, added to those accumulated (synchronised
        across processes only on the step's last micro-batch)."""
        no_sync = self.model.no_sync if self.runtime.distributed and not sync else nullcontext
        with no_sync():
            with self.precision():
                loss, parts = loss_fn(self.model, to_device(batch, self.runtime.device))
            self.scaler.scale(loss / self.accumulate).backward()
        return loss, parts

    def _optimizer_step(self) -> bool:
        """Apply the accumulated gradients and clear them; False when the step was skipped."""
        finite = self._gradients_finite()
        if finite:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return finite

    def _train_epoch(
        self,
        loader: DataLoader,
        sampler: ResumableSampler,
        loss_fn: LossFn,
        scheduler: Any,
        steps: int,
        metric_log: MetricLog | None,
    ) -> float:
        """One epoch of `steps` optimizer steps from micro-batch `self.batch` on; returns its mean
        loss."""
        sampler.set_epoch(self.epoch)
        sampler.skip = self.batch * self.data.batch_size
        self.model.train()
        batches = steps * self.accumulate
        window: dict[str, torch.Tensor] = {}
        window_size, epoch_loss, epoch_size = 0, torch.zeros(()), 0
        taken = skipped = 0
        progress = tqdm(
            itertools.islice(loader, batches - self.batch),
            total=batches - self.batch,
            desc=f"{self.stage} {self.epoch + 1}/{self.epochs}",
            disable=None if self.runtime.is_main else True,
            leave=False,
        )
        for batch in progress:
            self.batch += 1
            sync = self.batch % self.accumulate == 0
            if batch is not None:  # None: every clip of the batch was unreadable (and logged)
                if size := self.data.multigrid.size(self.step, self.plan.steps):
                    batch = scale_batch(batch, size * self.data.clip.detail)
                loss, parts = self._backward(loss_fn, batch, sync)
                for name, value in {"loss": loss, **parts}.items():
                    window[name] = window.get(name, 0) + value.detach().float().cpu()
                window_size += 1
                epoch_loss += loss.detach().float().cpu()
                epoch_size += 1
            if not sync:
                continue
            taken += 1
            if not self._optimizer_step():
                skipped += 1
            self.step += 1
            if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
                scheduler.step()
            if window_size and (self.step % self.run.log_every == 0 or self.batch == batches):
                means = {name: float(total) / window_size for name, total in window.items()}
                window, window_size = {}, 0
                progress.set_postfix(loss=f"{means['loss']:.3f}")
                if metric_log:
                    lr = self.optimizer.param_groups[0]["lr"]
                    metric_log.write("train", self.step, self.epoch, {**means, "lr": lr})
            if self.run.checkpoint_every and self.step % self.run.checkpoint_every == 0:
                self._save(self.checkpoints / "last.pt", scheduler)
        if skipped:
            log.warning(
                "%s epoch %d: %d of %d steps skipped, their gradients not finite",
                *(self.stage, self.epoch + 1, skipped, taken),
            )
        if skipped == taken > 0:
            raise Diverged(
                f"{self.stage} epoch {self.epoch + 1}: every step's gradients were not finite "
                "(a lower optim.lr, or the data's labels, may help)"
            )
        return float(epoch_loss) / max(epoch_size, 1)

    def _gradients_finite(self) -> bool:
        """Whether this step may be taken. One NaN gradient (a SupCon batch without a positive, a
        spike at a high learning rate) would make every weight NaN and the run would go on at
        chance, with nothing said; the step is skipped instead. fp16's loss scaler skips such
        steps itself and lowers its scale, so it is left to do that."""
        if self.scaler.is_enabled():
            return True
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        return not grads or bool(torch.nn.utils.get_total_norm(grads).isfinite())

    def _score(self, scorer: ValidateFn, weights: Path | None = None) -> dict[str, float]:
        """`scorer`'s metrics of the module (with the model of checkpoint `weights`, if given),
        computed on the main process and shared with the others so they take the same path."""
        metrics = [{}]
        if self.runtime.is_main:
            if weights:
                self.module.load_state_dict(load_checkpoint(weights)["model"])
            self.module.eval()
            with torch.no_grad(), self.precision():
                metrics = [scorer(self.module)]
        if self.runtime.distributed:
            dist.broadcast_object_list(metrics, src=0)
        return metrics[0]

    def _save(self, path: Path, scheduler: Any) -> None:
        if not self.runtime.is_main:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": CHECKPOINT_FORMAT,
            "stage": self.stage,
            "config": self.config,
            "meta": self.meta,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "plan": asdict(self.plan),
            "best": self.best,
            "best_metrics": self.best_metrics,
            "metrics": self.metrics,
            "rng": torch.get_rng_state(),
        }
        partial = path.with_suffix(".tmp")
        torch.save(state, partial)
        os.replace(partial, path)

    def _restore(self, checkpoint: dict[str, Any], scheduler: Any) -> None:
        """Continue a run from its checkpoint: only the epoch count and run settings may differ,
        so that an output directory never silently mixes two recipes."""

        def recipe(config: dict[str, Any]) -> dict[str, Any]:
            return {**config, "run": None, "optim": {**config["optim"], "epochs": None}}

        if recipe(checkpoint["config"]) != recipe(self.config):
            raise ValueError(
                f"{self.checkpoints} holds a {self.stage} run of another config; use another "
                "run.output_dir, or run.resume=false to start over"
            )
        self.module.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler and checkpoint["scheduler"]:
            # Progress comes from the checkpoint, the plan from this run's config: a rerun with
            # more epochs stretches a one-cycle schedule over the new length.
            plan = ("total_steps", "_schedule_phases")
            fresh = {k: v for k, v in scheduler.state_dict().items() if k in plan}
            scheduler.load_state_dict({**checkpoint["scheduler"], **fresh})
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch, self.batch, self.step = (checkpoint[k] for k in ("epoch", "batch", "step"))
        self.best, self.best_metrics = checkpoint["best"], checkpoint["best_metrics"]
        self.metrics = checkpoint["metrics"]
        torch.set_rng_state(checkpoint["rng"])
        log.info("%s resumes at epoch %d, step %d", self.stage, self.epoch + 1, self.step)
