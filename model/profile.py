"""Size and cost of a network: parameter counts per part and GFLOPs per clip.

Everything runs on the meta device (shapes only), so profiling the paper-size teacher takes
well under a second and no memory.
"""

import torch
from pydantic import BaseModel
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from model.manifest import ArchConfig
from model.networks import Teacher, build_network


class Profile(BaseModel):
    params: int
    backbone_params: int
    head_params: int
    fusion_params: int
    frames: int
    crop: int
    gflops: float
    """FLOPs of one clip / 1e9 as torch's FlopCounterMode counts them (a multiply-add is 2 FLOPs).
    In this convention the R(2+1)D-34 backbone on 16 x 112 x 112 costs 152 GFLOPs, the ~150 of
    the literature; the teacher runs its backbone twice."""


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def profile(arch: ArchConfig, crop: int = 112, frames: int | None = None) -> Profile:
    """Profile `arch` on one clip of `frames` (default: the arch's) x crop x crop."""
    frames = frames or arch.frames
    with torch.device("meta"):
        network = build_network(arch).eval()
        clip = torch.empty(1, 3, frames, crop, crop)
        with FlopCounterMode(display=False) as counter:
            network(clip, clip) if isinstance(network, Teacher) else network(clip)
    fusion = getattr(network, "fusion", None)
    return Profile(
        params=count_params(network),
        backbone_params=count_params(network.backbone),
        head_params=count_params(network.head),
        fusion_params=count_params(fusion) if fusion is not None else 0,
        frames=frames,
        crop=crop,
        gflops=counter.get_total_flops() / 1e9,
    )
