"""Enhancement of dark clips for the teacher's second stream: MSRCR Retinex and gamma correction.

Both are batched tensor ops on `B x C x T x H x W` clips and run wherever the clip is (CPU while
loading data, GPU inside a training step). Input is uint8 or float in [0, 1] or [0, 255]; output
is float in [0, 1].
"""

import math

import torch

SIGMAS = (15.0, 80.0, 250.0)
# Jobson, Rahman & Woodell (1997) colour restoration constants, on the [1, 256] intensity scale.
ALPHA, BETA = 125.0, 46.0
# Percentiles are estimated on at most this many pixels per channel of a clip: plenty for 1%/99%,
# and it keeps a 64-frame batch from sorting tens of millions of values.
_PERCENTILE_SAMPLES = 1 << 16


def to_unit(clip: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] copy of a uint8 or float clip; a float clip whose max exceeds 1 is [0, 255]."""
    if clip.dtype == torch.uint8:
        return clip.float() / 255.0
    clip = clip.float()
    over = clip.flatten(1).amax(dim=1) > 1.0
    scale = torch.where(over, 1.0 / 255.0, 1.0).view(-1, *[1] * (clip.ndim - 1))
    return clip * scale


def _blur_matrix(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """`size x size` gaussian blur along one axis, each row renormalised over the image.

    The kernel is truncated by the image borders and renormalised (normalised convolution), which
    needs no padding, so sigma 250 on a 112-pixel frame is as exact and as cheap as sigma 15.
    """
    x = torch.arange(size, dtype=torch.float32, device=device)
    kernel = torch.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * sigma**2))
    return kernel / kernel.sum(dim=1, keepdim=True)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of the last two (H, W) dims: two matrix products, whatever the sigma.

    The cost per pixel grows with H + W, which is cheap at network resolution (112-170 px), the
    only place enhancement runs.
    """
    h, w = images.shape[-2:]
    return _blur_matrix(h, sigma, images.device) @ images @ _blur_matrix(w, sigma, images.device).T


def msrcr(
    clip: torch.Tensor, sigmas: tuple[float, ...] = SIGMAS, clip_percent: float = 1.0
) -> torch.Tensor:
    """Multi-scale Retinex with colour restoration (Jobson et al. 1997) of `B x 3 x T x H x W`.

    MSR = mean over sigmas of log(I) - log(G_sigma * I), per frame; colour restoration multiplies it
    by beta * (log(alpha * I) - log(sum_c I)); each channel of each clip is then clipped at its
    `clip_percent` / 100 - `clip_percent` percentiles and stretched to [0, 1] (the gain and offset
    of the original formulation vanish in that stretch). Statistics are per clip, not per frame,
    so the enhancement does not flicker.
    """
    intensity = to_unit(clip).mul_(255.0).add_(1.0)
    log_i = intensity.log()
    surround = sum(gaussian_blur(intensity, s).log_() for s in sigmas) / len(sigmas)
    restoration = (log_i + math.log(ALPHA) - intensity.sum(dim=1, keepdim=True).log_()).mul_(BETA)
    out = (log_i - surround).mul_(restoration)
    low, high = _percentiles(out.flatten(2), clip_percent / 100.0)
    stretched = (out.flatten(2) - low) / (high - low).clamp_min(1e-6)
    return stretched.clamp_(0.0, 1.0).view_as(out)


def _percentiles(x: torch.Tensor, q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """q and 1-q quantiles along the last dim, estimated on an evenly strided sample."""
    x = x[..., :: max(1, x.shape[-1] // _PERCENTILE_SAMPLES)]
    n = x.shape[-1]
    low_k = max(1, round(q * (n - 1)) + 1)
    high_k = min(n, round((1 - q) * (n - 1)) + 1)
    return x.kthvalue(low_k, dim=-1, keepdim=True)[0], x.kthvalue(high_k, dim=-1, keepdim=True)[0]


def gamma_correct(clip: torch.Tensor, gamma: float = 2.2) -> torch.Tensor:
    """out = in^(1/gamma) on [0, 1]: the cheap enhancement (gamma 1.8-2.5 in related work)."""
    return to_unit(clip).pow(1.0 / gamma)
