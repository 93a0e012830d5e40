"""The two networks of ActLumos and the config that builds them.

The teacher sees the dark clip and its enhanced copy through one shared backbone, fuses the two
feature maps and classifies; the student sees the dark clip alone. Both name their backbone and
head the same way, so a student can start from a teacher's state dict (drop the `fusion.` keys).
"""

from typing import Literal, NamedTuple, Self

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from model.backbone import R2Plus1D
from model.fusion import FUSIONS, FusionKind, build_fusion
from model.head import BertHead, max_tokens


class ArchConfig(BaseModel):
    """Everything needed to rebuild a network; stored in each artifact's manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["student", "teacher"] = "student"
    depth: Literal[18, 34] = 34
    ig65m: bool = True
    width: int = Field(64, ge=1)
    """Base channel count; 64 is the paper's R(2+1)D, layer4 has 8 x width channels."""
    num_classes: int = Field(11, ge=1)
    frames: int = Field(64, ge=1)
    """Longest clip the head's position table accepts; shorter clips work too."""
    fusion: FusionKind | None = None
    """Teacher only; "single" classifies from the dark stream alone."""
    fusion_reduction: int = Field(4, ge=1)
    head_dim: int | None = None
    """Transformer width; None means the backbone's feature width (8 x width)."""
    head_heads: int = Field(8, ge=1)
    head_dropout: float = Field(0.1, ge=0, lt=1)
    token_keep: float = Field(0.8, gt=0, le=1)
    """Training-time probability that each temporal token stays visible to the head."""
    classifier_dropout: float = Field(0.8, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.kind == "student" and self.fusion is not None:
            raise ValueError("a student has no fusion; set fusion to null")
        if self.kind == "teacher" and self.fusion is None:
            raise ValueError(f"a teacher needs a fusion, one of {FUSIONS}")
        if (self.head_dim or self.feature_dim) % self.head_heads:
            raise ValueError("the head width must be divisible by head_heads")
        return self

    @property
    def feature_dim(self) -> int:
        return 8 * self.width


class NetworkOutput(NamedTuple):
    logits: torch.Tensor
    """`B x num_classes`."""
    embeddings: tuple[torch.Tensor, ...]
    """Per-stream `B x C` global averages of the layer4 map, before fusion, for the losses."""


def _head(arch: ArchConfig) -> BertHead:
    return BertHead(
        arch.feature_dim,
        arch.num_classes,
        max_tokens(arch.frames),
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
        self.backbone = R2Plus1D(arch.depth, arch.ig65m, arch.width)
        self.head = _head(arch)

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        features = self.backbone(x)
        return NetworkOutput(self.head(features), (features.mean(dim=(2, 3, 4)),))


class Teacher(nn.Module):
    """Dark and enhanced clips -> one shared backbone -> fusion -> BERT head."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = R2Plus1D(arch.depth, arch.ig65m, arch.width)
        self.fusion = build_fusion(str(arch.fusion), arch.feature_dim, arch.fusion_reduction)
        self.head = _head(arch)

    def forward(self, dark: torch.Tensor, enhanced: torch.Tensor) -> NetworkOutput:
        # One pass over both streams: the backbone is shared, so batching them is free speed.
        f_dark, f_ret = self.backbone(torch.cat([dark, enhanced])).chunk(2)
        logits = self.head(self.fusion(f_dark, f_ret))
        return NetworkOutput(logits, (f_dark.mean(dim=(2, 3, 4)), f_ret.mean(dim=(2, 3, 4))))


def build_network(arch: ArchConfig) -> Student | Teacher:
    return Student(arch) if arch.kind == "student" else Teacher(arch)
