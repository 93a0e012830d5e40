"""Zooming each clip to where it moves, so that a person fills the input whatever the camera.

A night camera mounted high with a wide lens shows a person a fifth of the frame tall: at the
network's 56 pixels an arm is one pixel wide, and a network that learnt people at the sizes its
training cameras showed reads them at little better than a guess (docs/benchmark.md, "The
mount's cost is the person's size"). In a still room what changes is the person, so the box
around the clip's change is a person detector that needs no training and no second network.

A learned localiser (`model.locate`) finds the person where the change does not: in noise that
swamps a slow arm, or under a shaking camera that outlines the room. Either way the box becomes a
square here (`square`) and the clip is cut to it (`zoom_into`).

Only torch tensor operations, batched, on whatever device the frames are on: `ClipSpec.to_input`
calls them, so training, evaluation and every serving backend zoom the same way.
"""

import torch
from torch.nn import functional as F

MARGIN = 2.0
"""The box's side against the extent of the change: the body around a moving arm."""
THRESHOLD = 0.3
"""Change below this fraction of the clip's strongest (above its median) is background: noise,
and what flicker and gain steps leave after each pixel's change is set against its light."""
QUANTILES = (0.05, 0.95)
"""The extent of the change: its central 90% along each axis, so that a speck does not widen it."""
DARK = 4.0
"""Grey levels added to a pixel's mean level before its change is divided by it: change is
measured against the light that falls there, so that a flickering lamp (a tenth of 250 levels)
counts for less than a person crossing a dark room (ten levels against ten), and the noise of
the darkest pixels does not explode."""
SMOOTHING = 5
"""Pixels of the box filter over the change map: sensor noise is per pixel, a limb is not."""


def _extent(
    weights: torch.Tensor, quantiles: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of `N x L` non-negative weights (each summing to more than zero), the positions of
    its `quantiles` in pixels: where the cumulative weight first reaches each."""
    cumulative = weights.cumsum(-1) / weights.sum(-1, keepdim=True)
    low, high = (
        (cumulative < q).sum(-1).clamp_max(weights.shape[-1] - 1).float() for q in quantiles
    )
    return low, high + 1


def square(
    energy: torch.Tensor, zoom: float, margin: float, quantiles: tuple[float, float]
) -> torch.Tensor:
    """`B x 3` square boxes (centre x, centre y, side; pixels) around where each non-negative
    `B x H x W` map has its weight: `margin` times the larger extent between its `quantiles`, at
    least `1 / zoom` of the shorter side and at most all of it, kept inside the frame. A map
    with no weight gets the centred whole."""
    _, height, width = energy.shape
    shorter = min(height, width)
    found = energy.flatten(1).sum(1) > 0
    energy = torch.where(found.view(-1, 1, 1), energy, torch.ones_like(energy))
    left, right = _extent(energy.sum(1), quantiles)
    top, bottom = _extent(energy.sum(2), quantiles)
    side = (margin * torch.maximum(right - left, bottom - top)).clamp(shorter / zoom, shorter)
    side = torch.where(found, side, torch.full_like(side, shorter))
    centre_x = ((left + right) / 2).clamp(side / 2, width - side / 2)
    centre_y = ((top + bottom) / 2).clamp(side / 2, height - side / 2)
    return torch.stack([centre_x, centre_y, side], 1)


def luma(frames: torch.Tensor) -> torch.Tensor:
    """Float `B x T x H x W` mean of the first three channels of uint8 `B x T x H x W x C`."""
    # Summed plane by plane: a mean over a last axis of three runs ten times slower on CPU.
    return (frames[..., 0].float() + frames[..., 1] + frames[..., 2]) / 3


def change_boxes(frames: torch.Tensor, zoom: float) -> torch.Tensor:
    """`B x 3` square boxes (centre x, centre y, side; pixels) around each clip's change.

    uint8 `B x T x H x W x C` frames (the first three channels are the dark RGB). A pixel's
    change is measured against its own mean level (`DARK`), and the clip's median change is
    taken off, so that flicker and exposure steps, which scale whole frames, count for little.
    A clip that does not change gets the centred whole (`square`).
    """
    level = luma(frames)
    change = (level[:, 1:] - level[:, :-1]).abs().mean(1, keepdim=True)
    change = change / (level.mean(1, keepdim=True) + DARK)
    change = F.avg_pool2d(change, SMOOTHING, stride=1, padding=SMOOTHING // 2)[:, 0]
    floor = change.flatten(1).median(1).values.view(-1, 1, 1)
    peak = change.flatten(1).amax(1).view(-1, 1, 1)
    energy = (change - floor - THRESHOLD * (peak - floor)).clamp_min(0)
    return square(energy, zoom, MARGIN, QUANTILES)


def zooms(length: int, zoom: float) -> bool:
    """Whether a clip spec zooms clips of `length` frames at all: one frame has no change to
    find, and a limit of 1 or less (0: the spec's "no zoom") leaves the whole frame."""
    return length >= 2 and zoom > 1


def shrink(frames: torch.Tensor, factor: int) -> torch.Tensor:
    """`B x T x H x W x C` frames (uint8 or float) scaled down `factor` times, each pixel the
    mean of the `factor x factor` it covers (uint8 rounded); 1 returns them as they are."""
    if factor == 1:
        return frames
    *lead, height, width, channels = frames.shape
    # Summed slice by slice: a mean over the blocks' middle axes ran seven times slower on CPU
    # (a fifth of a detail-2 training step's data path).
    blocks = frames.reshape(-1, height // factor, factor, width // factor, factor * channels)
    rows = blocks[:, :, 0].to(torch.float32, copy=True)
    for i in range(1, factor):
        rows += blocks[:, :, i]
    mean = rows[..., :channels].clone()
    for i in range(1, factor):
        mean += rows[..., i * channels : (i + 1) * channels]
    mean = mean.div_(factor**2).view(*lead, height // factor, width // factor, channels)
    return mean if frames.is_floating_point() else mean.round_().to(torch.uint8)


def zoom_into(frames: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 `B x T x H x W x C` frames -> `B x T x size x size x C`, each clip's square box
    (`square`, in the frames' pixels) scaled to it, bilinear."""
    batch, length, height, width, channels = frames.shape
    # affine_grid's coordinates run from -1 to 1 over the input's width and height.
    theta = torch.zeros(batch, 2, 3, device=frames.device)
    theta[:, 0, 0] = boxes[:, 2] / width
    theta[:, 1, 1] = boxes[:, 2] / height
    theta[:, 0, 2] = 2 * boxes[:, 0] / width - 1
    theta[:, 1, 2] = 2 * boxes[:, 1] / height - 1
    grid = F.affine_grid(theta, [batch, 1, size, size], align_corners=False)
    planes = frames.permute(0, 1, 4, 2, 3).reshape(batch, length * channels, height, width)
    zoomed = F.grid_sample(planes.float(), grid, mode="bilinear", align_corners=False)
    zoomed = zoomed.round_().clamp_(0, 255).to(torch.uint8)
    return zoomed.view(batch, length, channels, size, size).permute(0, 1, 3, 4, 2).contiguous()
