"""Measurements of generated clips: legibility at the network's input size, mean luma, and the
temporal noise that survives encoding.

Legibility: the noise-free frame through the camera's tone curve, area-downscaled to 64 pixels
wide (what the network sees), compared between the actor's pixels (covered at least half) and a
ring of clear surround within 2 pixels of them: the mean absolute difference of figure pixels from
the ring's mean, in grey levels, the median over the frames that show the actor.

Noise: the decoded clip's luma, at pixels that do not change in the noise-free rendering of the
same clip (re-rendered from its seed): the median over those pixels of std(frame difference) /
sqrt(2), which is the per-frame temporal noise of a static pixel.
"""

from math import gcd

import numpy as np

LEGIBILITY_FLOOR = 3.0
"""Grey levels of figure-to-surround contrast at the network's input size every clip meets."""
NETWORK_WIDTH = 64
_LUMA = (0.299, 0.587, 0.114)
STATIC = 0.25
"""Most a static pixel's noise-free grey level may change over the clip."""
NOISE_BINS = (0, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 255)
"""Mean-level bins (grey levels) of the noise curve."""


def luma(frames: np.ndarray) -> np.ndarray:
    """Grey levels of RGB frames `... x 3` (a weighted sum spelled out: no BLAS)."""
    frames = frames.astype(np.float32)
    return frames[..., 0] * _LUMA[0] + frames[..., 1] * _LUMA[1] + frames[..., 2] * _LUMA[2]


def network_size(planes: np.ndarray, width: int = NETWORK_WIDTH) -> np.ndarray:
    """`F x H x W` planes area-averaged to `width` columns (and rows in proportion): each pixel
    repeated, then blocks averaged, which is exact for any size ratio."""
    frames, rows, cols = planes.shape
    common = gcd(width, cols)
    up, block = width // common, cols // common
    if (rows * up) % block:
        raise ValueError(f"{cols}x{rows} does not scale to {width} wide in whole pixels")
    fine = planes.repeat(up, 1).repeat(up, 2)
    shape = (frames, rows * up // block, block, width, block)
    return fine.reshape(shape).mean(axis=(2, 4), dtype=np.float32)


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Grow `F x H x W` masks by `steps` pixels (3 x 3 neighbourhoods)."""
    for _ in range(steps):
        grown = mask.copy()
        grown[:, 1:] |= mask[:, :-1]
        grown[:, :-1] |= mask[:, 1:]
        grown[:, :, 1:] |= grown[:, :, :-1].copy()
        grown[:, :, :-1] |= grown[:, :, 1:].copy()
        mask = grown
    return mask


def legibility(clean: np.ndarray, coverage: np.ndarray) -> tuple[float, bool]:
    """Figure-to-surround contrast (grey levels) of noise-free frames `F x H x W x 3` whose actor
    covers `coverage` (`F x H x W`) (see the module's note), and whether the figure is the
    brighter; (0, True) when the actor is never seen."""
    small = network_size(luma(np.clip(clean, 0, 255)))
    cover = network_size(coverage)
    figure = cover >= 0.5
    ring = _dilate(figure, 2) & (cover < 0.1)
    contrasts, brighter = [], []
    for frame, inside, around in zip(small, figure, ring, strict=True):
        if inside.any() and around.any():
            difference = frame[inside] - frame[around].mean()
            contrasts.append(float(np.abs(difference).mean()))
            brighter.append(float(difference.mean()) > 0)
    if not contrasts:
        return 0.0, True
    return float(np.median(contrasts)), sum(brighter) * 2 >= len(brighter)


def static_noise(decoded: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per static pixel: its noise-free mean level and the decoded clip's temporal noise there
    (std of the frame difference / sqrt(2)), both grey levels of luma. Static: its noise-free level
    changes by at most `STATIC` over the clip and it is neither black-clipped nor saturated."""
    reference = luma(clean)
    steady = (np.ptp(reference, axis=0) <= STATIC) & (reference.min(0) > 0.5)
    steady &= reference.max(0) < 250
    differences = np.diff(luma(decoded), axis=0)[:, steady]
    sigma = differences.std(axis=0) / np.sqrt(2) if len(differences) else np.zeros(0)
    return reference.mean(0)[steady], sigma.astype(np.float32)


def noise_curve(levels: np.ndarray, sigmas: np.ndarray) -> list[dict]:
    """The median noise per mean-level bin (`NOISE_BINS`), with its pixel count."""
    rows = []
    for low, high in zip(NOISE_BINS[:-1], NOISE_BINS[1:], strict=True):
        inside = (levels >= low) & (levels < high)
        if inside.any():
            rows.append(
                {
                    "level": [low, high],
                    "pixels": int(inside.sum()),
                    "sigma": round(float(np.median(sigmas[inside])), 3),
                }
            )
    return rows
