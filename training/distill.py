"""Recipe: distillation of the student and its export (`lumos train distill`).

The student, started from the self-supervised backbone, learns from the labels and from the frozen
teacher's softened scores: cross-entropy + lambda_kd * T^2 * KL(teacher || student) at T = 4. It
sees the dark clip only; the teacher gets its enhanced copy too, so what the enhancement reveals
reaches a network that never needs it. The student of the epoch with the best validation top-1
becomes a model artifact.

With `kd_targets: cached` the teacher scores each training video once, before the first epoch,
instead of every batch (see `DistillConfig.kd_targets`).
"""

import logging
import shlex
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from model.artifact import save_artifact
from model.clip import ClipSpec
from model.losses import kd_loss
from model.manifest import ArchConfig, Manifest
from model.networks import Teacher, build_network
from model.state import load_strict
from training.clips import ClipDataset, collate_clips
from training.config import DataConfig, DistillConfig, EnhanceConfig, TeacherConfig
from training.engine import (
    FitResult,
    Trainer,
    build_stage_network,
    clip_dataset,
    init_runtime,
    load_checkpoint,
    memory_format,
    seed_everything,
    stage_spec,
    training_spec,
)
from training.evaluate import held_out_scorers
from training.teacher import TeacherInputs, enhanced_clips, enhancer

log = logging.getLogger(__name__)


def load_teacher(path: Path, spec: ClipSpec) -> tuple[Teacher, EnhanceConfig, list[str]]:
    """The frozen teacher of a teacher-stage checkpoint, its enhancement and its labels."""
    checkpoint = load_checkpoint(path)
    if checkpoint["stage"] != "teacher":
        raise ValueError(f"{path} is a {checkpoint['stage']} checkpoint, not a teacher one")
    config = TeacherConfig.model_validate(checkpoint["config"])
    if config.data.clip != spec:
        raise ValueError(f"teacher {path} was trained on {config.data.clip}, the student on {spec}")
    teacher = build_network(ArchConfig.model_validate(checkpoint["meta"]["arch"]))
    load_strict(teacher, checkpoint["model"], str(path))
    return teacher.eval().requires_grad_(False), config.enhance, checkpoint["meta"]["labels"]


@torch.no_grad()
def teacher_logits(
    teacher: Teacher,
    inputs: TeacherInputs,
    clips: ClipDataset,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """The teacher's logits for every item of `clips`, in order; zeros for an unreadable video
    (training skips it as well)."""
    rows = torch.zeros(len(clips), teacher.arch.num_classes)
    for first in range(0, len(clips), batch_size):
        indices = range(first, min(first + batch_size, len(clips)))
        kept = [(i, item[0]) for i in indices if (item := clips[i]) is not None]
        if kept:
            readable, frames = zip(*kept, strict=True)
            logits = teacher(*inputs(torch.stack(frames).to(device))).logits
            rows[list(readable)] = logits.float().cpu()
    return rows


class WithTargets(Dataset):
    """A data set's `(clip, label)` items, each with its row of `targets` appended."""

    def __init__(self, dataset: Dataset, targets: torch.Tensor) -> None:
        self.dataset, self.targets = dataset, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple | None:
        item = self.dataset[index]
        return None if item is None else (*item, self.targets[index])


def describe_data(data: DataConfig, train_clips: int) -> dict:
    return {"root": str(data.root), "split": data.split, "train_clips": train_clips}


def train_distill(config: DistillConfig) -> FitResult:
    if config.arch.kind != "student":
        raise ValueError("distillation trains a student: set arch.kind to student")
    runtime = init_runtime(config.run.device)
    seed_everything(config.run.seed + runtime.rank)
    spec = stage_spec(config.data)
    trained = training_spec(spec)
    teacher, options = None, {}
    if config.teacher:
        teacher, enhance, teacher_labels = load_teacher(config.teacher, config.data.clip)
        teacher = teacher.to(runtime.device, memory_format=memory_format(config.run))
        teacher_inputs = TeacherInputs(enhancer(enhance), trained)
        options = enhanced_clips(enhance, config.data)
    cached = teacher is not None and config.kd_targets == "cached"
    train, classes = clip_dataset(config.data, "train", train=True, **({} if cached else options))
    if teacher and teacher_labels != list(classes):
        raise ValueError(f"teacher {config.teacher} knows {teacher_labels}, the data {classes}")
    arch = config.arch.model_copy(update={"num_classes": len(classes)})
    student = build_stage_network(config, arch)
    log.info("distill: %s from %s, init %s", arch, config.teacher, config.init)

    def logits(model: nn.Module, frames: torch.Tensor, cut: ClipSpec = spec) -> torch.Tensor:
        return model(cut.to_input(frames[..., :3])).logits  # the dark channels only

    def loss_fn(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        frames, labels, *scores = batch
        output = logits(model, frames, trained)
        ce = F.cross_entropy(output, labels)
        if teacher is None:
            return ce, {}
        if scores:
            target = scores[0]
        else:
            with torch.no_grad():
                target = teacher(*teacher_inputs(frames)).logits
        kd = kd_loss(output, target, config.kd_temperature)
        return ce + config.lambda_kd * kd, {"ce": ce, "kd": kd}

    validate, test = held_out_scorers(logits, config.data, classes, runtime.device)
    meta = {"arch": arch.model_dump(mode="json"), "labels": list(classes)}
    trainer = Trainer("distill", student, config, runtime, meta)
    if cached:
        scored, _ = clip_dataset(config.data, "train", train=False, **options)
        with trainer.precision():
            targets = teacher_logits(
                teacher, teacher_inputs, scored, config.data.batch_size, runtime.device
            )
        log.info("distill: the teacher scored %d training videos once", len(targets))
        train = WithTargets(train, targets)
    result = trainer.fit(train, loss_fn, validate, test, collate_fn=collate_clips)
    if config.export_dir and runtime.is_main:
        export(config, result, describe_data(config.data, len(train)), spec)
    return result


def export(config: DistillConfig, result: FitResult, data: dict, spec: ClipSpec) -> Path:
    """Write the best student as a model artifact whose manifest says how it was made; `spec` is
    the clip spec it trained on (`stage_spec`), with its localiser where it has one."""
    checkpoint = load_checkpoint(result.best)
    arch = ArchConfig.model_validate(checkpoint["meta"]["arch"])
    student = build_network(arch)
    load_strict(student, checkpoint["model"], str(result.best))
    manifest = Manifest(
        version=config.version,
        arch=arch,
        labels=checkpoint["meta"]["labels"],
        clip=spec,
        provenance={
            "command": shlex.join(["lumos", *sys.argv[1:]]),
            "config": checkpoint["config"],
            "data": data,
            # The configs of the stages it came from: the teacher, and the SSL run it started from.
            "upstream": {
                name: load_checkpoint(path)["config"]
                for name, path in (("teacher", config.teacher), ("init", config.init))
                if path
            },
        },
        # What selected it (validation, or the training loss), and its one test score if asked.
        metrics={
            "val" if config.data.validation else "train": result.metrics,
            "epoch": checkpoint["epoch"],
            **({"test": result.test} if result.test else {}),
        },
    )
    log.info("exporting the student to %s", config.export_dir)
    return save_artifact(config.export_dir, student, manifest)
