"""How dark and how noisy a clip is, and the gate that skips clips not worth a forward pass.

Dark video is the point of the model, so the stats travel with every result (a prediction on a
clip of mean luma 3 reads differently from one at 40) and feed the per-stream gauges; the gate is
off by default and exists for cameras that are sometimes capped or switched off at night.
"""

import math
from dataclasses import dataclass

import numpy as np

# BT.601 luma weights, the ones FFmpeg and most cameras use for SD/HD content.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Immerkaer's noise estimator: this kernel cancels image structure up to second order, so what
# remains of a smooth dark scene is mostly sensor noise.
_NOISE_SCALE = math.sqrt(math.pi / 2) / 6
# Noise is measured on a few frames: enough for a stable estimate, cheap for long clips.
_NOISE_FRAMES = 4


@dataclass(frozen=True, slots=True)
class Illumination:
    """Luma statistics of a clip on the 0-255 scale."""

    __pydantic_config__ = {"use_attribute_docstrings": True}

    luma_mean: float
    """Mean luma."""
    luma_p5: float
    """5th percentile of luma: the dark end."""
    luma_p95: float
    """95th percentile of luma: the bright end."""
    noise_sigma: float
    """Estimated sensor-noise sigma (Immerkaer)."""


def measure(frames: np.ndarray) -> Illumination:
    """Statistics of uint8 RGB frames `T x H x W x 3`."""
    luma = frames.astype(np.float32) @ _LUMA
    p5, p95 = np.percentile(luma, (5, 95))
    picks = np.linspace(0, len(luma) - 1, min(_NOISE_FRAMES, len(luma))).round().astype(int)
    return Illumination(
        luma_mean=round(float(luma.mean()), 3),
        luma_p5=round(float(p5), 3),
        luma_p95=round(float(p95), 3),
        noise_sigma=round(float(np.mean([_noise_sigma(luma[i]) for i in picks])), 3),
    )


def _noise_sigma(image: np.ndarray) -> float:
    """Immerkaer (1996): sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |image * kernel|."""
    if image.shape[0] < 3 or image.shape[1] < 3:
        return 0.0
    c = image[1:-1, 1:-1]
    response = (
        image[:-2, :-2]
        + image[:-2, 2:]
        + image[2:, :-2]
        + image[2:, 2:]
        - 2 * (image[:-2, 1:-1] + image[2:, 1:-1] + image[1:-1, :-2] + image[1:-1, 2:])
        + 4 * c
    )
    return float(_NOISE_SCALE * np.abs(response).mean())


def gate(stats: Illumination, min_luma: float, min_range: float) -> str | None:
    """Why a clip should be skipped ("too_dark", "no_signal"), or None to infer it.

    A zero threshold turns its check off. "no_signal" is a nearly uniform picture (a lens cap, a
    black or frozen test screen), which no amount of enhancement turns into an action.
    """
    if min_range and stats.luma_p95 - stats.luma_p5 < min_range:
        return "no_signal"
    if min_luma and stats.luma_mean < min_luma:
        return "too_dark"
    return None
