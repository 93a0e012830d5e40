"""Measurements of generated clips: legibility at the network's input size, mean luma, and the
temporal noise that survives encoding.

Legibility: the noise-free frame through the camera's tone curve, area-downscaled to 64 pixels
wide (what the network sees), compared between the actor's pixels (covered at least half) and a
ring of clear surround within 2 pixels of them: the mean absolute difference of figure pixels from
the ring's mean, in grey levels, the median over the frames that show the actor.

Figure height: the rows the actor covers (at least half), as a fraction of the frame's height,
the median over the frames that show the actor: how large a person the camera shows, which is
what a camera mount changes (docs/benchmark.md, "Which shift costs what").

Noise: the decoded clip's luma, at pixels that do not change in the noise-free rendering of the
same clip (re-rendered from its seed): the median over those pixels of std(frame difference) /
sqrt(2), which is the per-frame temporal noise of a static pixel.
"""

from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.synth.sensor import LUMA

if TYPE_CHECKING:
    from training.synth.clip import Shot

LEGIBILITY_FLOOR = 3.0
"""Grey levels of figure-to-surround contrast at the network's input size every clip meets."""
NETWORK_WIDTH = 64
COVERED = 0.5
"""Coverage from which a pixel counts as the actor's (legibility and figure height alike)."""
STATIC = 0.25
"""Most a static pixel's noise-free grey level may change over the clip."""
NOISE_BINS = (0, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 255)
"""Mean-level bins (grey levels) of the noise curve."""


def luma(frames: np.ndarray) -> np.ndarray:
    """Grey levels of RGB frames `... x 3` (a weighted sum spelled out: no BLAS)."""
    frames = frames.astype(np.float32)
    return frames[..., 0] * LUMA[0] + frames[..., 1] * LUMA[1] + frames[..., 2] * LUMA[2]


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
    figure = cover >= COVERED
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


def figure_height(coverage: np.ndarray) -> float:
    """The actor's median height over the frames that show it, as a fraction of the frame's, from
    its coverage per pixel (`F x H x W`, see the module's note)."""
    rows = (coverage >= COVERED).any(axis=2)
    heights = [np.ptp(np.flatnonzero(row)) + 1 for row in rows if row.any()]
    return float(np.median(heights)) / coverage.shape[1] if heights else 0.0


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


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    points = np.percentile(values, [0, 10, 25, 50, 75, 90, 100])
    names = ("min", "p10", "p25", "median", "p75", "p90", "max")
    return {name: round(float(value), 2) for name, value in zip(names, points, strict=True)}


def clip_stats(video: np.ndarray, shot: "Shot | None") -> dict:
    """One decoded clip's mean luma and length (and its RGB moments, for the summary); with its
    noise-free re-rendering, also its static pixels' noise (median, and their levels and sigmas
    for the curve) and its legibility."""
    pixels = video.reshape(-1, 3).astype(np.float64) / 255
    stats: dict = {
        "luma": round(float(luma(video).mean()), 2),
        "frames": len(video),
        "_moments": np.stack([pixels.mean(0), (pixels**2).mean(0)]),
    }
    if shot is not None:
        levels, sigmas = static_noise(video, shot.clean())
        stats["noise"] = round(float(np.median(sigmas)), 3) if len(sigmas) else None
        stats["static_pixels"] = int(len(sigmas))
        stats["legibility"] = round(shot.contrast, 2)
        stats["figure_height"] = round(figure_height(shot.figure), 3)
        stats["redraws"] = shot.redraws
        stats["_levels"], stats["_sigmas"] = levels, sigmas
    return stats


def root_stats(root: Path, split: int | None = None, limit: int | None = None) -> dict:
    """Per clip and summarised over a data set root (every subset of a split; at most `limit`
    clips per subset, spread over the classes): mean luma; for a root written by `lumos data
    synth` (re-rendered from its settings) also decoded noise, the noise curve against mean level
    and legibility."""
    # Imported here: the benchmark renders clips, whose legibility floor is in this module.
    from training.datasets import detect_layout, load_dataset, resolve_split
    from training.synth.benchmark import SUBSETS, clip_index, read_settings, render
    from training.video import read_video

    layout = detect_layout(root)
    split = resolve_split(layout, root, split)
    try:
        config = read_settings(root)
    except ValueError:
        config = None
    clips, levels, sigmas, moments = [], [], [], []
    for subset in layout.subsets(root, split):
        items = load_dataset(root, split, subset).items
        if limit is not None and len(items) > limit:
            items = tuple(items[int(i)] for i in np.linspace(0, len(items) - 1, limit))
        for item in items:
            shot = None
            if config is not None and subset in SUBSETS:
                shot = render(config, subset, item.label, clip_index(item.path.stem), False)[0]
            stats = clip_stats(read_video(item.path), shot)
            moments.append(stats.pop("_moments"))
            levels.append(stats.pop("_levels", np.zeros(0)))
            sigmas.append(stats.pop("_sigmas", np.zeros(0)))
            clips.append({"clip": item.path.name, "subset": subset, **stats})
    pooled_levels = np.concatenate(levels) if levels else np.zeros(0)
    pooled_sigmas = np.concatenate(sigmas) if sigmas else np.zeros(0)
    lumas = [clip["luma"] for clip in clips]
    legible = [clip["legibility"] for clip in clips if "legibility" in clip]
    noises = [clip["noise"] for clip in clips if clip.get("noise") is not None]
    mean, square = np.mean(moments, axis=0) if moments else np.zeros((2, 3))
    summary = {
        "root": str(root),
        "clips": len(clips),
        "frames": _quantiles([clip["frames"] for clip in clips]),
        "rgb_mean": [round(float(value), 4) for value in mean],
        "rgb_std": [round(float(value), 4) for value in np.sqrt(np.maximum(square - mean**2, 0))],
        "luma": _quantiles(lumas),
        "luma_mean": round(float(np.mean(lumas)), 2) if lumas else None,
        "luma_histogram": {
            f"{low}-{high}": int(sum(low <= value < high for value in lumas))
            for low, high in ((0, 5), (5, 10), (10, 20), (20, 40), (40, 256))
        },
        "noise": _quantiles(noises),
        "noise_curve": noise_curve(pooled_levels, pooled_sigmas),
        "legibility": _quantiles(legible),
        "figure_height": _quantiles([c["figure_height"] for c in clips if "figure_height" in c]),
        "legibility_floor": LEGIBILITY_FLOOR,
        "below_floor": int(sum(value < LEGIBILITY_FLOOR for value in legible)),
        "redrawn": int(sum(clip.get("redraws", 0) > 0 for clip in clips)),
    }
    return {"summary": summary, "clips": clips}


def brighten(frames: np.ndarray, gamma: float = 2.2) -> np.ndarray:
    """uint8 frames lifted for a person to look at: each channel to the power 1/`gamma`."""
    lifted = 255 * (frames.astype(np.float32) / 255) ** np.float32(1 / gamma)
    return np.clip(np.rint(lifted), 0, 255).astype(np.uint8)


def contact_sheet(videos: list[np.ndarray], path: Path, columns: int = 4) -> None:
    """A PNG of brightened frames: one row per video, `columns` frames spread over it, each at
    half size, in 64 colours (noise does not compress: this keeps the file a few tens of KB)."""
    from PIL import Image

    rows = []
    for video in videos:
        picks = np.linspace(0, len(video) - 1, columns).round().astype(int)
        frames = video[picks].astype(np.float32)
        count, height, width, _ = frames.shape
        half = frames.reshape(count, height // 2, 2, width // 2, 2, 3).mean(axis=(2, 4))
        rows.append(np.concatenate(list(brighten(half.round().astype(np.uint8))), 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet = Image.fromarray(np.concatenate(rows, 0))
    sheet = sheet.quantize(64, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    sheet.save(path, optimize=True)


def root_contact_sheet(root: Path, path: Path, split: int | None = None, clips: int = 6) -> None:
    """A contact sheet of `clips` clips spread over a root's last subset (its test list)."""
    from training.datasets import detect_layout, load_dataset, resolve_split
    from training.video import read_video

    layout = detect_layout(root)
    split = resolve_split(layout, root, split)
    items = load_dataset(root, split, layout.subsets(root, split)[-1]).items
    picks = np.linspace(0, len(items) - 1, min(clips, len(items))).round().astype(int)
    contact_sheet([read_video(items[pick].path) for pick in picks], path)
