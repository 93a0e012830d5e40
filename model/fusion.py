"""Fusion of the teacher's dark and Retinex feature maps: DFF and the ablation baselines.

Every fusion module maps `(f_dark, f_ret)`, both `B x C x T x H x W`, to one map of that shape.
"""

import torch
from torch import nn

from model.manifest import FUSIONS


def _bottleneck(channels: int, hidden: int, out: int, norm_out: bool) -> list[nn.Module]:
    """1x1x1 conv -> BN -> ReLU -> 1x1x1 conv (-> BN): the shape every DFF branch shares."""
    layers: list[nn.Module] = [
        nn.Conv3d(channels, hidden, 1),
        nn.BatchNorm3d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv3d(hidden, out, 1),
    ]
    return layers + [nn.BatchNorm3d(out)] if norm_out else layers


class DynamicFeatureFusion(nn.Module):
    """DFF: per-position softmax weights decide how much each stream contributes.

    The weights come from the sum of both streams seen globally (clip context) and locally (each
    time step and position), so the teacher can lean on the enhanced stream exactly where the dark
    one carries little signal. As in the paper, the global branch is batch-normalised after pooling
    to one value per channel, so training needs batches of at least 2 clips.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.global_context = nn.Sequential(
            nn.AdaptiveAvgPool3d(1), *_bottleneck(channels, hidden, channels, norm_out=True)
        )
        self.local_context = nn.Sequential(*_bottleneck(channels, hidden, channels, norm_out=True))
        self.weighting = nn.Sequential(*_bottleneck(channels, hidden, 2, norm_out=False))

    def weights(self, f_dark: torch.Tensor, f_ret: torch.Tensor) -> torch.Tensor:
        """`B x 2 x T x H x W`: W_dark and W_ret, summing to 1 at every position."""
        x = f_dark + f_ret
        return self.weighting(self.global_context(x) + self.local_context(x)).softmax(dim=1)

    def forward(self, f_dark: torch.Tensor, f_ret: torch.Tensor) -> torch.Tensor:
        w = self.weights(f_dark, f_ret)
        return w[:, :1] * f_dark + w[:, 1:] * f_ret


class SumFusion(nn.Module):
    def forward(self, f_dark: torch.Tensor, f_ret: torch.Tensor) -> torch.Tensor:
        return f_dark + f_ret


class MeanFusion(nn.Module):
    def forward(self, f_dark: torch.Tensor, f_ret: torch.Tensor) -> torch.Tensor:
        return (f_dark + f_ret) / 2


class ConcatFusion(nn.Module):
    """Static learned fusion: a 1x1x1 conv over the concatenated streams."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2 * channels, channels, 1)

    def forward(self, f_dark: torch.Tensor, f_ret: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([f_dark, f_ret], dim=1))


class DarkOnly(nn.Module):
    """Single-stream baseline: the enhanced stream only shapes the contrastive loss."""

    def forward(self, f_dark: torch.Tensor, f_ret: torch.Tensor) -> torch.Tensor:
        return f_dark


def build_fusion(kind: str, channels: int, reduction: int = 4) -> nn.Module:
    """The fusion module named `kind` (one of FUSIONS) for `channels`-channel feature maps."""
    if kind == "dff":
        return DynamicFeatureFusion(channels, reduction)
    if kind == "concat":
        return ConcatFusion(channels)
    static = {"sum": SumFusion, "mean": MeanFusion, "single": DarkOnly}
    if kind not in static:
        raise ValueError(f"unknown fusion {kind!r}; expected one of {FUSIONS}")
    return static[kind]()
