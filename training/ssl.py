"""Recipe: self-supervised pretraining of the student (`lumos train ssl`).

No labels: two clips of each video (different start and crop for "two_view", or only one of the
two) are pulled together and pushed away from the other videos of the batch by NT-Xent. A
projection head, used only in this stage, keeps the contrastive geometry out of the backbone's
features; distillation then starts the student from the backbone.
"""

import logging

import torch
from torch import nn

from model.backbone import R2Plus1D
from model.losses import nt_xent_loss
from training.clips import collate_clips
from training.config import SSLConfig
from training.engine import (
    FitResult,
    Trainer,
    build_stage_network,
    clip_dataset,
    init_runtime,
    seed_everything,
    stage_spec,
    training_spec,
)

log = logging.getLogger(__name__)


class Contrastive(nn.Module):
    """Backbone -> global average -> projection MLP (SimCLR's), on `B x 3 x T x H x W` input."""

    def __init__(self, backbone: R2Plus1D, projection_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        width = backbone.out_channels
        self.projection = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, projection_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(x).mean(dim=(2, 3, 4)))


def train_ssl(config: SSLConfig) -> FitResult:
    runtime = init_runtime(config.run.device)
    seed_everything(config.run.seed + runtime.rank)
    train, classes = clip_dataset(config.data, "train", train=True, views=config.views)
    arch = config.arch.model_copy(update={"num_classes": len(classes)})
    module = Contrastive(build_stage_network(config, arch).backbone, config.projection_dim)
    log.info("ssl: %s views of %d clips, backbone %s", config.views, len(train), arch)
    spec = training_spec(stage_spec(config.data))

    def loss_fn(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        pairs, _ = batch  # B x 2 x T x H x W x 3; the labels are never looked at
        z = model(spec.to_input(pairs.flatten(0, 1))).unflatten(0, (len(pairs), 2))
        return nt_xent_loss(z[:, 0], z[:, 1], config.temperature), {}

    meta = {"arch": arch.model_dump(mode="json"), "labels": list(classes)}
    trainer = Trainer("ssl", module, config, runtime, meta)
    return trainer.fit(train, loss_fn, collate_fn=collate_clips)
