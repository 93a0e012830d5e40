"""What a model artifact says about itself, as plain data: architecture, labels, clip spec.

This module imports no torch, so the control plane (the API, the model registry, the job planner)
can read and validate manifests without loading the tensor stack; `model.artifact` adds the
weights, and `model.networks` builds the network an `ArchConfig` describes.
"""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model.clip import ClipSpec

FORMAT = "lumos-artifact/1"
WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"

FusionKind = Literal["dff", "sum", "mean", "concat", "single"]
FUSIONS: tuple[str, ...] = get_args(FusionKind)


class ArtifactError(ValueError):
    """An artifact directory that cannot be loaded or written, with the reason."""


class ArchConfig(BaseModel):
    """Everything needed to rebuild a network; stored in each artifact's manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["student", "teacher"] = "student"
    depth: Literal[10, 18, 34] = 34
    ig65m: bool = True
    width: int = Field(64, ge=1)
    """Base channel count; 64 is the paper's R(2+1)D, layer4 has 8 x width channels."""
    stem_stride: Literal[2, 4] = 2
    """Spatial stride of the stem's 7x7 conv; 2 is the paper's. 4 costs a student at 112 px what
    2 costs it at 56 px; at the demo's 18-minute budget it scored lower
    (artifacts/demo/MODEL_CARD.md)."""
    mid_multiple: int = Field(1, ge=1)
    """Rounds each (2+1)D conv's mid-channels to the nearest multiple. 1 is torchvision's exact
    count, which IG-65M weights need; 8 fits oneDNN's channel blocks on AVX2 and AVX-512 CPUs,
    where width 12's odd counts (27, 43) make the 28x28 layer1 convolutions, most of a student's
    step, several times slower per FLOP (artifacts/demo/MODEL_CARD.md)."""
    time_strides: int = Field(3, ge=0, le=3)
    """How many of layers 2-4 halve the clip's length, from layer2 on; 3 is the paper's, whose 64
    frames leave the BERT head 8 temporal tokens to attend over. 8 frames leave it one; 2
    keeps layer4's length and gives it two, at 1.00-1.08x a step, which the demo's recipe did
    not gain from (artifacts/demo/MODEL_CARD.md)."""
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
        if self.ig65m and self.mid_multiple != 1:
            raise ValueError("IG-65M weights fix the mid-channels: mid_multiple must be 1")
        if self.kind == "teacher" and self.fusion is None:
            raise ValueError(f"a teacher needs a fusion, one of {FUSIONS}")
        if (self.head_dim or self.feature_dim) % self.head_heads:
            raise ValueError("the head width must be divisible by head_heads")
        return self

    @property
    def feature_dim(self) -> int:
        return 8 * self.width


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["lumos-artifact/1"] = FORMAT
    version: str = Field(min_length=1)
    arch: ArchConfig
    labels: list[str]
    clip: ClipSpec
    provenance: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _labels_match_classes(self) -> Self:
        if len(self.labels) != self.arch.num_classes:
            raise ValueError(
                f"{len(self.labels)} labels for {self.arch.num_classes} classes; they must match"
            )
        return self


def load_manifest(directory: str | Path) -> Manifest:
    """The manifest alone, e.g. to show a model's labels without building it."""
    path = Path(directory) / MANIFEST
    try:
        return Manifest.model_validate(json.loads(path.read_text()))
    except FileNotFoundError as e:
        raise ArtifactError(f"{directory} is not a model artifact: no {MANIFEST}") from e
    except (json.JSONDecodeError, ValidationError) as e:
        raise ArtifactError(f"invalid {path}: {e}") from e
