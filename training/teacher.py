"""Recipe: the two-stream teacher (`lumos train teacher`).

The teacher sees each dark clip twice, as recorded and Retinex-enhanced, through one shared
backbone, fuses the two feature maps (DFF or an ablation baseline) and classifies with the BERT
head. Loss: cross-entropy + lambda_sup * SupCon over both streams' pooled embeddings, so dark and
enhanced views of one class pull together before they are fused.
"""

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.clip import ClipSpec
from model.enhance import gamma_correct, msrcr, to_unit
from model.losses import supcon_loss
from training.clips import collate_clips
from training.config import DataConfig, EnhanceConfig, TeacherConfig
from training.engine import (
    CachedClips,
    FitResult,
    Trainer,
    build_stage_network,
    clip_dataset,
    init_runtime,
    remember,
    seed_everything,
    stage_spec,
    training_spec,
)
from training.evaluate import held_out_scorers

log = logging.getLogger(__name__)

Enhance = Callable[[torch.Tensor], torch.Tensor]
"""uint8 `B x 3 x T x H x W` clips -> enhanced float clips in [0, 1]."""


def enhancer(config: EnhanceConfig) -> Enhance:
    if config.method == "gamma":
        return lambda clip: gamma_correct(clip, config.gamma)
    return msrcr


class EnhancedClips(CachedClips):
    """Cached clips whose frames carry their enhanced copy as channels 3-5.

    Each video is enhanced once, when first read, and kept beside the decoded frames; the crop and
    mirroring then cut both copies alike, so the two streams always show the same region.
    """

    def __init__(self, *args, enhance: EnhanceConfig, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.enhance = enhance

    def frames(self, index: int) -> torch.Tensor:
        video = super().frames(index)

        def enhanced() -> torch.Tensor:
            unit = enhancer(self.enhance)(video.permute(3, 0, 1, 2)[None])[0]
            return unit.mul(255).round_().byte().permute(1, 2, 3, 0)

        key = (*self.key(index), self.enhance)
        return torch.cat([video, remember(key, enhanced)], dim=-1)


def enhanced_clips(enhance: EnhanceConfig, data: DataConfig) -> dict[str, Any]:
    """`clip_dataset` options that cache the enhanced copies, when the config asks for it."""
    return {"kind": EnhancedClips, "enhance": enhance} if enhance.cache and data.cache else {}


class TeacherInputs:
    """uint8 `B x T x H x W x 3|6` clips -> the teacher's normalised (dark, enhanced) streams.

    Six-channel clips (from EnhancedClips) bring their enhanced copy; three-channel clips are
    enhanced here, on the training device.
    """

    def __init__(self, enhance: Enhance, spec: ClipSpec) -> None:
        self.enhance, self.spec = enhance, spec

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.spec.focused(frames).permute(0, 4, 1, 2, 3).contiguous()
        dark = frames[:, :3]
        enhanced = to_unit(frames[:, 3:]) if frames.shape[1] == 6 else self.enhance(dark)
        return self.spec.normalize_unit(to_unit(dark)), self.spec.normalize_unit(enhanced)


def train_teacher(config: TeacherConfig) -> FitResult:
    runtime = init_runtime(config.run.device)
    seed_everything(config.run.seed + runtime.rank)
    enhance = enhancer(config.enhance)
    spec = stage_spec(config.data)
    inputs, trained = TeacherInputs(enhance, spec), TeacherInputs(enhance, training_spec(spec))
    options = enhanced_clips(config.enhance, config.data)
    train, classes = clip_dataset(config.data, "train", train=True, **options)
    arch = config.arch.model_copy(update={"num_classes": len(classes)})
    teacher = build_stage_network(config, arch)
    log.info("teacher: %s, %d training clips, fusion %s", arch, len(train), arch.fusion)

    def logits(model: nn.Module, frames: torch.Tensor) -> torch.Tensor:
        return model(*inputs(frames)).logits

    def loss_fn(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        frames, labels = batch
        output = model(*trained(frames))
        ce = F.cross_entropy(output.logits, labels)
        supcon = supcon_loss(output.embeddings, labels, config.sup_temperature)
        return ce + config.lambda_sup * supcon, {"ce": ce, "supcon": supcon}

    validate, test = held_out_scorers(logits, config.data, classes, runtime.device, **options)
    meta = {"arch": arch.model_dump(mode="json"), "labels": list(classes)}
    trainer = Trainer("teacher", teacher, config, runtime, meta)
    return trainer.fit(train, loss_fn, validate, test, collate_fn=collate_clips)
