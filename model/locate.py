"""A learned localiser: where in a dark clip the person is, for the focus square (`model.focus`).

The change square fails where the person's change is near the sensor's noise or the camera
shakes: it zooms onto noise or outlines the room, and cuts the person in one training clip in
seven. A small fully convolutional network reads eight maps of the clip (its mean colour and
level, how much each pixel varies and changes, and that change against the light there), each
standardised per clip, and answers per pixel whether the person covers it at some frame; the
square is drawn around where it says so. Trained on the generated benchmark's figure masks
(`training.locate`), 8,209 weights, it gave the demo recipe +5.0 points on fresh clips and +5.3
on the high-mount shift over three paired seeds (docs/benchmark.md, "The square is the next
lever").

Its weights travel in the student's artifact, beside the network's, and alone in a `locate`
stage's file (both read and written by `model.artifact`); the clip spec that names it
(`ClipSpec.locate`) runs it in `to_input`: training, evaluation and every serving backend use
the same squares.
"""

import torch
from torch import nn
from torch.nn import functional as F

from model.focus import DARK, luma, square

MAPS = 8
"""Mean R, G, B and level over the clip; temporal deviation; mean and largest frame-to-frame
change; mean change over the level plus `DARK`."""
MARGIN = 1.2
"""The square's side against the extent of where the person is: a little room around a limb."""
QUANTILES = (0.02, 0.98)
"""The extent along each axis: the localiser's map is clean enough to take nearly all of it."""
PREFIX = "locator."
"""Its weights' names in an artifact's weights file, beside the network's."""


def clip_maps(frames: torch.Tensor) -> torch.Tensor:
    """uint8 `B x T x H x W x C` frames (the first three channels RGB; `T` at least 2) ->
    float `B x MAPS x H x W`, each map standardised over its clip's pixels, so that a dark and a
    bright night read alike."""
    rgb = frames[..., :3].float().mean(1).permute(0, 3, 1, 2)
    level = luma(frames)
    mean = level.mean(1)
    # E[x^2] - E[x]^2: torch's std over a middle axis runs several times slower on CPU.
    deviation = ((level * level).mean(1) - mean * mean).clamp_min(0).sqrt()
    change = (level[:, 1:] - level[:, :-1]).abs()
    mean_change = change.mean(1)
    maps = torch.cat(
        [
            rgb,
            torch.stack(
                [mean, deviation, mean_change, change.amax(1), mean_change / (mean + DARK)], 1
            ),
        ],
        1,
    )
    flat = maps.flatten(2)
    centred = maps - flat.mean(2)[..., None, None]
    return centred / (flat.std(2)[..., None, None] + 1e-3)


class Locator(nn.Module):
    """Eight maps -> per-pixel logit that the person covers the pixel at some frame of the clip.

    Half resolution, then 3x3 convolutions whose dilations (1, 2, 4, 1) see 31 half-pixels
    around each: a person at the demo's 56 pixels, and the room around them to tell them from."""

    def __init__(self, channels: int = 16, dilations: tuple[int, ...] = (1, 2, 4, 1)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = MAPS
        for dilation in dilations:
            layers += [
                nn.Conv2d(width, channels, 3, padding=dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            width = channels
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, 1, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 `B x T x H x W x C` frames -> `B x H x W` logits. Always fp32, whatever autocast
        the caller runs under (training steps run under bf16 where the CPU has it, serving in
        fp32), so that training and every backend draw the same squares."""
        with torch.autocast(frames.device.type, enabled=False):
            maps = clip_maps(frames)
            logits = self.out(self.body(F.avg_pool2d(maps, 2, ceil_mode=True)))
        return F.interpolate(logits, size=maps.shape[-2:], mode="bilinear")[:, 0]

    @torch.no_grad()
    def boxes(self, frames: torch.Tensor, zoom: float, threshold: float) -> torch.Tensor:
        """`B x 3` square boxes (centre x, centre y, side; pixels) around where the person is:
        the pixels it gives a probability over `threshold`, weighted by how much over. A clip
        where it finds nobody gets the whole field."""
        sure = (self(frames).sigmoid() - threshold).clamp_min(0)
        return square(sure, zoom, MARGIN, QUANTILES)
