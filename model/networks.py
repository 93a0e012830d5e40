"""The two networks of ActLumos and the config that builds them.

The teacher sees the dark clip and its enhanced copy through one shared backbone, fuses the two
feature maps and classifies; the student sees the dark clip alone. Both name their backbone and
head the same way, so a student can start from a teacher's state dict (drop the `fusion.` keys).
"""

from typing import NamedTuple

import torch
from torch import nn

from model.backbone import R2Plus1D
from model.fusion import build_fusion
from model.head import BertHead, max_tokens
from model.manifest import ArchConfig


class NetworkOutput(NamedTuple):
    logits: torch.Tensor
    """`B x num_classes`."""
    embeddings: tuple[torch.Tensor, ...]
    """Per-stream `B x C` global averages of the layer4 map, before fusion, for the losses."""


def _backbone(arch: ArchConfig) -> R2Plus1D:
    return R2Plus1D(
        arch.depth, arch.ig65m, arch.width, arch.stem_stride, arch.mid_multiple, arch.time_strides
    )


def _head(arch: ArchConfig) -> BertHead:
    return BertHead(
        arch.feature_dim,
        arch.num_classes,
        max_tokens(arch.frames, arch.time_strides),
        dim=arch.head_dim,
        heads=arch.head_heads,
        dropout=arch.head_dropout,
        token_keep=arch.token_keep,
        classifier_dropout=arch.classifier_dropout,
    )


class Student(nn.Module):
    """Dark clip -> backbone -> BERT head: what production runs."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = _backbone(arch)
        self.head = _head(arch)

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        features = self.backbone(x)
        return NetworkOutput(self.head(features), (features.mean(dim=(2, 3, 4)),))


class Teacher(nn.Module):
    """Dark and enhanced clips -> one shared backbone -> fusion -> BERT head."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = _backbone(arch)
        self.fusion = build_fusion(str(arch.fusion), arch.feature_dim, arch.fusion_reduction)
        self.head = _head(arch)

    def forward(self, dark: torch.Tensor, enhanced: torch.Tensor) -> NetworkOutput:
        # One pass over both streams: the backbone is shared, so batching them is free speed.
        f_dark, f_ret = self.backbone(torch.cat([dark, enhanced])).chunk(2)
        logits = self.head(self.fusion(f_dark, f_ret))
        return NetworkOutput(logits, (f_dark.mean(dim=(2, 3, 4)), f_ret.mean(dim=(2, 3, 4))))


def build_network(arch: ArchConfig) -> Student | Teacher:
    return Student(arch) if arch.kind == "student" else Teacher(arch)
