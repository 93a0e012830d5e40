"""The generated low-light action benchmark: stick figures doing the 11 ARID actions, filmed dark.

Real dark-video data cannot be downloaded here, so tests, the CPU pipeline and the demo model need a
stand-in that is hard in the same ways: the action is only in the motion (Sit and Stand are exact
time-reverses of each other, so no single frame tells them apart), people differ in size, place,
speed, direction and clothing, scenes and light differ, the camera shakes and pans, and the picture
is what a cheap camera makes of very little light: low exposure, sensor noise, lifted blacks, a
colour cast, gamma and lossy compression. It is written in the ARID v1.0 layout, so the same reader
loads it as the real data set.

Everything is vectorised over frames: each body part's distance field is computed for all frames at
once on a half-resolution grid (a distance field is smooth, so bilinear upsampling keeps edges
crisp), and each clip draws from its own generator seeded by (seed, subset, class, index), so the
output depends on the seed alone, not on worker count or order.
"""

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.datasets import ARID_CLASSES
from training.video import write_video

log = logging.getLogger(__name__)

Pose = dict[str, np.ndarray]
"""Per-frame angles (radians) and displacements (figure heights), see `_neutral_pose`."""

SIDES = ("l", "r")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Test clips come from a different generator stream than training clips of the same split.
TEST_SEED_OFFSET = 1000
# Validation clips come from a stream of their own: a fourth entropy word, which no training or test
# clip of any seed has (theirs is three words, the same as a fourth word of 0).
VALIDATION_STREAM = 1


@dataclass(frozen=True)
class SynthConfig:
    """What `lumos data synth` writes."""

    out: Path
    clips_per_class: int = 100
    test_clips_per_class: int = 30
    val_clips_per_class: int = 0
    """Validation clips (what the recipes select on); with none, no validation list is written and
    the recipes hold some training clips out instead (`training.splits`)."""
    seed: int = 0
    frames: tuple[int, int] = (32, 48)
    """Inclusive range of frames per clip."""
    size: tuple[int, int] = (160, 120)
    """(width, height), both even."""
    fps: float = 24.0
    split: int = 1
    """Written as list_cvt/ARID_split<split>_{train,validation,test}.txt."""
    workers: int = 0
    progress: bool | None = None
    """A progress bar on stderr: None = only on a terminal."""
    """Processes rendering in parallel; 0 means one per CPU core."""


# ----------------------------------------------------------------------------------------- motion


def _ease(x: np.ndarray) -> np.ndarray:
    """0 before 0, 1 after 1, a cosine S-curve between: smooth starts and stops."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def _tween(u: np.ndarray, keys: list[tuple[float, float]]) -> np.ndarray:
    """Eased interpolation through (time, value) keys, held constant outside them.

    Each key-to-key step adds its change once the time has passed it, so the sum of eased steps
    is the piecewise curve.
    """
    value = np.full_like(u, keys[0][1])
    for (t0, v0), (t1, v1) in pairwise(keys):
        value += (v1 - v0) * _ease((u - t0) / (t1 - t0))
    return value


def _wobble(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """Slow random sway, so nobody stands perfectly still."""
    freqs = rng.uniform(0.3, 1.5, 2)
    phases = rng.uniform(0, 2 * np.pi, 2)
    return amplitude * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]).mean(0)


def _neutral_pose(t: np.ndarray, rng: np.random.Generator) -> Pose:
    """Standing at rest. Angles: lean (torso from vertical, forward +), neck (head tilt, forward
    +), per side shoulder/hip flexion from hanging down (forward +), arm abduction (outward +),
    elbow flexion and elbow abduction (added to the upper arm's), knee flexion (shin backward +);
    forward/lift move the body, turn adds to the viewing yaw."""
    zeros = np.zeros_like(t)
    pose: Pose = {
        "lean": np.radians(rng.uniform(0, 4)) + _wobble(rng, t, np.radians(2)),
        "neck": _wobble(rng, t, np.radians(4)),
        "forward": zeros.copy(),
        "lift": zeros.copy(),
        "turn": zeros.copy(),
    }
    for side in SIDES:
        pose[f"{side}_shoulder"] = np.radians(rng.uniform(-5, 10)) + _wobble(rng, t, 0.05)
        pose[f"{side}_abduct"] = np.full_like(t, np.radians(rng.uniform(3, 12)))
        pose[f"{side}_elbow"] = np.full_like(t, np.radians(rng.uniform(5, 25)))
        pose[f"{side}_elbow_abduct"] = zeros.copy()
        pose[f"{side}_hip"] = np.full_like(t, np.radians(rng.uniform(-3, 3)))
        pose[f"{side}_knee"] = np.full_like(t, np.radians(rng.uniform(0, 6)))
    return pose


@dataclass
class Prop:
    """A held object (cup, bottle, box): a thick segment standing on a hand."""

    hand: str
    length: float
    radius: float
    tilt: np.ndarray
    """Angle from upright, tipping forward (+)."""
    grasp: int = 0
    """Frame at which the hand picks it up; before that it lies where the hand will take it."""


def _gait(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, cycles: float, swing: float, knee: float
) -> np.ndarray:
    """Alternating leg swing with knee flexion while the leg swings through; returns the phase."""
    phase = 2 * np.pi * cycles * t + rng.uniform(0, 2 * np.pi)
    for sign, side in ((1, "l"), (-1, "r")):
        pose[f"{side}_hip"] = sign * swing * np.sin(phase)
        pose[f"{side}_knee"] = np.radians(5) + knee * np.maximum(0, sign * np.cos(phase)) ** 1.5
    return phase


def _walk(t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop]) -> None:
    cycles, swing = rng.uniform(1.2, 2.2), np.radians(rng.uniform(18, 28))
    phase = _gait(t, rng, pose, cycles, swing, np.radians(rng.uniform(30, 45)))
    for sign, side in ((-1, "l"), (1, "r")):
        pose[f"{side}_shoulder"] = sign * 0.8 * swing * np.sin(phase)
    pose["forward"] = 1.6 * np.sin(swing) * cycles * t


def _run(t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop]) -> None:
    cycles, swing = rng.uniform(2.0, 3.2), np.radians(rng.uniform(35, 50))
    phase = _gait(t, rng, pose, cycles, swing, np.radians(rng.uniform(60, 95)))
    pose["lean"] += np.radians(rng.uniform(10, 18))
    for sign, side in ((-1, "l"), (1, "r")):
        pose[f"{side}_shoulder"] = sign * swing * np.sin(phase)
        pose[f"{side}_elbow"] = np.full_like(t, np.radians(rng.uniform(80, 100)))
    pose["lift"] = 0.04 * np.abs(np.sin(phase))
    pose["forward"] = 2.2 * np.sin(swing) * cycles * t


def _one_shot(t: np.ndarray, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Local time of an action that takes a random part [low, high] of the clip at a random time:
    0 at its start, 1 at its end."""
    duration = rng.uniform(low, high)
    start = rng.uniform(0.05, 0.95 - duration)
    return (t - start) / duration


def _jump(t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop]) -> None:
    jumps = int(rng.integers(1, 3))
    height, crouch = rng.uniform(0.15, 0.35), np.radians(rng.uniform(50, 80))
    u = (t * jumps + rng.uniform(-0.15, 0.15)) % 1.0 if jumps > 1 else _one_shot(t, rng, 0.6, 0.8)
    knee = _tween(
        u,
        [
            (0, 0),
            (0.25, crouch),
            (0.38, 0),
            (0.5, 0.5),
            (0.62, 0.2),
            (0.75, crouch * 0.8),
            (0.95, 0),
        ],
    )
    pose["l_knee"] = pose["r_knee"] = knee
    pose["l_hip"] = pose["r_hip"] = knee * 0.6
    pose["lean"] += knee * 0.5
    arms = _tween(u, [(0, 0), (0.25, -0.7), (0.4, 2.6), (0.6, 2.2), (0.8, 0.3), (1, 0)])
    pose["l_shoulder"] = pose["r_shoulder"] = arms
    pose["lift"] = height * np.sin(np.pi * np.clip((u - 0.38) / 0.3, 0, 1))


def _wave(t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop]) -> None:
    side = SIDES[int(rng.integers(2))]
    u = _one_shot(t, rng, 0.75, 0.9)
    raised = _tween(u, [(0, 0), (0.15, 1), (0.85, 1), (1, 0)])
    waves = 2 * np.pi * rng.uniform(2.0, 4.0) * t + rng.uniform(0, 2 * np.pi)
    pose[f"{side}_abduct"] += raised * np.radians(rng.uniform(110, 140))
    pose[f"{side}_shoulder"] += raised * np.radians(rng.uniform(10, 30))
    pose[f"{side}_elbow_abduct"] = raised * np.radians(25 + rng.uniform(20, 35) * np.sin(waves))


def _push(t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop]) -> None:
    pushes = rng.uniform(1.5, 3.0)
    extend = _ease(0.5 - 0.5 * np.cos(2 * np.pi * pushes * t + rng.uniform(0, 2 * np.pi)))
    stance = np.radians(rng.uniform(10, 20))
    pose["l_hip"], pose["r_hip"] = np.full_like(t, stance), np.full_like(t, -stance)
    pose["lean"] += np.radians(rng.uniform(8, 15)) + extend * np.radians(8)
    for side in SIDES:
        pose[f"{side}_shoulder"] = np.full_like(t, np.radians(rng.uniform(70, 85)))
        pose[f"{side}_abduct"] = np.full_like(t, np.radians(5))
        pose[f"{side}_elbow"] = np.radians(100) * (1 - extend) + np.radians(5)
    pose["forward"] = 0.12 * np.cumsum(np.maximum(np.diff(extend, prepend=extend[0]), 0))


def _pick(t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop]) -> None:
    side = SIDES[int(rng.integers(2))]
    u = _one_shot(t, rng, 0.55, 0.75)
    down = _tween(u, [(0, 0), (0.4, 1), (0.55, 1), (1, 0)])
    pose["lean"] += down * np.radians(rng.uniform(55, 75))
    pose["l_hip"] = pose["r_hip"] = down * np.radians(rng.uniform(25, 45))
    pose["l_knee"] = pose["r_knee"] = down * np.radians(rng.uniform(45, 75))
    pose[f"{side}_shoulder"] = down * np.radians(rng.uniform(20, 35)) + (u > 0.5) * np.radians(15)
    pose[f"{side}_elbow"] = _tween(u, [(0, 0.2), (0.4, 0.05), (0.55, 0.05), (1, 1.2)])
    grasp = int(np.argmin(np.abs(u - 0.47)))
    props.append(Prop(side, 0.09, 0.035, np.full_like(t, np.pi / 2), grasp=grasp))


def _drink(t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop]) -> None:
    side = SIDES[int(rng.integers(2))]
    sips = int(rng.integers(1, 3))
    u = (t * sips + rng.uniform(-0.1, 0.1)) % 1.0 if sips > 1 else _one_shot(t, rng, 0.6, 0.85)
    up = _tween(u, [(0, 0), (0.3, 1), (0.7, 1), (1, 0)])
    pose[f"{side}_shoulder"] = np.radians(10) + up * np.radians(rng.uniform(25, 40))
    pose[f"{side}_elbow"] = np.radians(80) + up * np.radians(rng.uniform(50, 65))
    pose["neck"] -= up * np.radians(rng.uniform(15, 30))
    props.append(Prop(side, 0.08, 0.035, up * np.radians(rng.uniform(60, 90))))


def _pour(t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop]) -> None:
    bottle = SIDES[int(rng.integers(2))]
    cup = "l" if bottle == "r" else "r"
    pours = int(rng.integers(1, 3))
    u = (t * pours + rng.uniform(-0.1, 0.1)) % 1.0 if pours > 1 else _one_shot(t, rng, 0.6, 0.85)
    tip = _tween(u, [(0, 0), (0.35, 1), (0.7, 1), (1, 0)])
    pose[f"{bottle}_shoulder"] = np.radians(rng.uniform(35, 50)) + tip * np.radians(10)
    pose[f"{bottle}_elbow"] = np.full_like(t, np.radians(rng.uniform(50, 70)))
    pose[f"{cup}_shoulder"] = np.full_like(t, np.radians(rng.uniform(20, 30)))
    pose[f"{cup}_elbow"] = np.full_like(t, np.radians(rng.uniform(65, 80)))
    props.append(Prop(bottle, 0.15, 0.025, tip * np.radians(rng.uniform(100, 130))))
    props.append(Prop(cup, 0.07, 0.035, np.zeros_like(t)))


def _sit(t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop]) -> None:
    u = _one_shot(t, rng, 0.5, 0.7)
    seat = _tween(u, [(0, 0), (1, 1)])
    pose["l_hip"] = pose["r_hip"] = seat * np.radians(rng.uniform(80, 95))
    pose["l_knee"] = pose["r_knee"] = seat * np.radians(rng.uniform(80, 95))
    pose["lean"] += _tween(u, [(0, 0), (0.45, np.radians(rng.uniform(25, 40))), (1, 0.1)])
    for side in SIDES:
        pose[f"{side}_shoulder"] += _tween(u, [(0, 0), (0.45, 0.6), (1, 0.35)])
        pose[f"{side}_elbow"] += seat * np.radians(40)
    pose["forward"] = -0.15 * seat


def _turn(t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop]) -> None:
    u = _one_shot(t, rng, 0.45, 0.7)
    pose["turn"] = (
        _tween(u, [(0, 0), (1, 1)]) * np.radians(rng.uniform(120, 200)) * rng.choice([-1, 1])
    )
    steps = 2 * np.pi * rng.uniform(1.5, 2.5) * np.clip(u, 0, 1)
    for sign, side in ((1, "l"), (-1, "r")):
        lift = np.maximum(0, sign * np.sin(steps)) * ((u > 0) & (u < 1))
        pose[f"{side}_hip"] = lift * np.radians(20)
        pose[f"{side}_knee"] = lift * np.radians(35)


ACTIONS: dict[str, Callable[[np.ndarray, np.random.Generator, Pose, list[Prop]], None]] = {
    "Drink": _drink,
    "Jump": _jump,
    "Pick": _pick,
    "Pour": _pour,
    "Push": _push,
    "Run": _run,
    "Sit": _sit,
    "Stand": _sit,  # rendered from Sit, then played backwards: see `render_clip`
    "Turn": _turn,
    "Walk": _walk,
    "Wave": _wave,
}


# ------------------------------------------------------------------------------------- the figure


# Torso, neck to head centre, upper arm, forearm, thigh, shin (figure heights), and limb girth.
_BODY = np.array([0.3, 0.11, 0.16, 0.15, 0.245, 0.245, 1.0])


def _direction(flex: np.ndarray, abduct: np.ndarray, side: int) -> np.ndarray:
    """Unit limb direction: hanging down, swung forward by `flex`, then outward by `abduct`."""
    return np.stack(
        [np.sin(flex) * np.cos(abduct), -np.cos(flex) * np.cos(abduct), side * np.sin(abduct)], -1
    )


def _skeleton(pose: Pose, props: list[Prop], rng: np.random.Generator) -> list[tuple]:
    """Body segments `(start, end, radius, part)` in figure heights, the body's own frame (x
    forward, y up from the ground, z to its right), each end an `F x 3` array."""
    torso, head, upper_arm, forearm, thigh, shin, girth = _BODY * rng.uniform(0.92, 1.08, 7)
    lean = pose["lean"]
    zero = np.zeros_like(lean)
    pelvis = np.stack([zero, zero, zero], -1)
    neck = pelvis + torso * np.stack([np.sin(lean), np.cos(lean), zero], -1)
    head_angle = 0.6 * lean + pose["neck"]
    skull = neck + head * np.stack([np.sin(head_angle), np.cos(head_angle), zero], -1)
    limb = 0.027 * girth
    segments: list[tuple] = [(pelvis, neck, 0.045 * girth, "body"), (skull, skull, 0.065, "skin")]
    hands, feet = {}, []
    for side, sign in zip(SIDES, (-1, 1), strict=True):
        flex, abduct = pose[f"{side}_shoulder"], pose[f"{side}_abduct"]
        shoulder = neck + [0, -0.02, sign * 0.09]
        elbow = shoulder + upper_arm * _direction(flex, abduct, sign)
        forearm_dir = _direction(
            flex + pose[f"{side}_elbow"], abduct + pose[f"{side}_elbow_abduct"], sign
        )
        hands[side] = elbow + forearm * forearm_dir
        hip = pelvis + [0, 0, sign * 0.06]
        thigh_flex = pose[f"{side}_hip"]
        knee = hip + thigh * _direction(thigh_flex, zero, sign)
        ankle = knee + shin * _direction(thigh_flex - pose[f"{side}_knee"], zero, sign)
        toe = ankle + [0.07, -0.01, 0]
        feet += [ankle, toe]
        segments += [
            (hip, knee, limb * 1.2, "legs"),
            (knee, ankle, limb * 1.1, "legs"),
            (ankle, toe, limb, "shoes"),
            (shoulder, elbow, limb, "body"),
            (elbow, hands[side], limb * 0.9, "body"),
            (hands[side], hands[side], limb * 1.1, "skin"),
        ]
    for prop in props:
        frames = np.arange(len(lean))
        base = hands[prop.hand][np.maximum(frames, prop.grasp)]
        up = np.stack([np.sin(prop.tilt), np.cos(prop.tilt), zero], -1)
        segments.append((base, base + prop.length * up, prop.radius, "prop"))
    # Stand on the lowest foot, then leave the ground by `lift`.
    height = 0.03 - np.min([point[:, 1] for point in feet], axis=0) + pose["lift"]
    offset = np.stack([pose["forward"], height, zero], -1)
    return [(start + offset, end + offset, radius, part) for start, end, radius, part in segments]


def _signed_distance(
    starts: np.ndarray, ends: np.ndarray, radii: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> np.ndarray:
    """Distance from grid points to the nearest of S thick segments, negative inside.

    `starts`, `ends`: `F x S x 2` pixel (x, y); `radii`: `S` pixels; grid `xs` (W), `ys` (H).
    Returns `F x H x W`. Shapes broadcast to F x S x H x W, hence the small grid.
    """
    ax, ay = starts[..., 0, None, None], starts[..., 1, None, None]
    bx, by = ends[..., 0, None, None] - ax, ends[..., 1, None, None] - ay
    px, py = xs - ax, ys[:, None] - ay
    along = np.clip((px * bx + py * by) / (bx * bx + by * by + 1e-6), 0.0, 1.0)
    distance = np.hypot(px - along * bx, py - along * by) - radii[:, None, None]
    return distance.min(axis=1)


def _resample(field: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of a `... x h x w` field at fractional grid rows and columns."""
    for axis, positions in ((-2, rows), (-1, cols)):
        positions = np.clip(positions, 0, field.shape[axis] - 1).astype(np.float32)
        low = np.minimum(positions.astype(int), field.shape[axis] - 2)
        shape = [1] * field.ndim
        shape[axis] = len(positions)
        frac = (positions - low).reshape(shape)
        field = np.take(field, low, axis) * (1 - frac) + np.take(field, low + 1, axis) * frac
    return field


def _colour(rng: np.random.Generator, luma: float) -> np.ndarray:
    """A random, mostly muted colour of the given luma (linear RGB, at most 1)."""
    tint = rng.uniform(-1, 1, 3) * rng.uniform(0.1, 0.7)
    colour = np.exp(tint).astype(np.float32)
    return np.minimum(colour * np.float32(luma) / (colour @ _LUMA), 1.0)


# -------------------------------------------------------------------------------------- the scene

_PARTS = ("legs", "shoes", "body", "skin", "prop")
"""Painting order: later parts cover earlier ones."""


def _background(rng: np.random.Generator, height: int, width: int, floor: float) -> np.ndarray:
    """A room, `height x width x 3`: wall and floor meeting at row `floor`, furniture and pictures,
    a gradient of light across it and a blotchy texture."""
    rows = np.arange(height, dtype=np.float32)[:, None, None]
    cols = np.arange(width, dtype=np.float32)[None, :, None]
    wall, ground = _colour(rng, rng.uniform(0.1, 0.6)), _colour(rng, rng.uniform(0.1, 0.5))
    canvas = np.repeat(np.where(rows < floor, wall, ground), width, axis=1)
    for _ in range(int(rng.integers(2, 6))):
        box_w, box_h = rng.uniform(0.08, 0.4) * width, rng.uniform(0.1, 0.6) * height
        left = int(rng.uniform(-box_w / 2, width - box_w / 2))
        on_floor = rng.random() < 0.6
        bottom = int(
            floor + rng.uniform(0, 0.1) * height if on_floor else rng.uniform(0.2, 0.7) * height
        )
        colour = _colour(rng, rng.uniform(0.05, 0.8))
        canvas[max(bottom - int(box_h), 0) : bottom, max(left, 0) : left + int(box_w)] = colour
    slope = rng.uniform(-0.6, 0.6, 2).astype(np.float32)
    canvas *= 1 + slope[0] * (cols / width - 0.5) + slope[1] * (rows / height - 0.5)
    blotches = rng.uniform(0.85, 1.15, (height // 12 + 2, width // 12 + 2)).astype(np.float32)
    return canvas * _resample(blotches, np.arange(height) / 12, np.arange(width) / 12)[..., None]


def _camera(rng: np.random.Generator, travel: np.ndarray, width: int) -> np.ndarray:
    """Integer camera offsets `2 x F` (x, y): a hand-held random walk of up to ~1.5 pixels, plus a
    pan that follows a person who would otherwise cross more than 40% of the picture."""
    extent = float(np.ptp(travel))
    follow = max(0.0, 1 - 0.4 * width / extent) if extent > 0 else 0.0
    shake = rng.uniform(0, 1.5) * np.cumsum(rng.normal(size=(2, len(travel))), axis=1)
    pan = np.stack([follow * travel, np.zeros_like(travel)])
    return np.round(pan + shake / np.sqrt(len(travel))).astype(int)


def _paint_figure(scene: np.ndarray, segments: list[tuple], colours: dict[str, np.ndarray]) -> None:
    """Paint pixel-space segments `(start, end, radius, part)` (ends `F x 2`) over `scene`.

    Each part's distance field is computed on every other pixel of the figure's bounding box and
    upsampled; a distance field is smooth, so its upsampled zero crossing is still a crisp edge.
    """
    height, width = scene.shape[1:3]
    ends = np.stack([point for segment in segments for point in segment[:2]], 1)
    reach = max(radius for _, _, radius, _ in segments) + 2
    x0, y0 = np.maximum(np.floor(ends.min((0, 1)) - reach).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(ends.max((0, 1)) + reach).astype(int), [width, height])
    if x1 <= x0 + 2 or y1 <= y0 + 2:
        return
    xs = np.arange(x0, x1 + 1, 2, dtype=np.float32)
    ys = np.arange(y0, y1 + 1, 2, dtype=np.float32)
    region = scene[:, y0:y1, x0:x1]
    for part, colour in colours.items():
        chosen = [segment for segment in segments if segment[3] == part]
        if not chosen:
            continue
        starts = np.stack([segment[0] for segment in chosen], 1).astype(np.float32)
        stops = np.stack([segment[1] for segment in chosen], 1).astype(np.float32)
        radii = np.array([segment[2] for segment in chosen], dtype=np.float32)
        field = _signed_distance(starts, stops, radii, xs, ys)
        fine = _resample(field, np.arange(y1 - y0) / 2, np.arange(x1 - x0) / 2)
        coverage = np.clip(0.5 - fine, 0.0, 1.0)[..., None]
        region += coverage * (colour - region)


def _scene(
    action: str, rng: np.random.Generator, frames: int, width: int, height: int
) -> np.ndarray:
    """Linear-light RGB frames `F x H x W x 3` of one person doing `action` in a random room."""
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    pose = _neutral_pose(t, rng)
    props: list[Prop] = []
    ACTIONS[action](t, rng, pose, props)
    if not props and rng.random() < 0.3:  # people carry things whatever they do
        props.append(
            Prop(SIDES[int(rng.integers(2))], rng.uniform(0.06, 0.12), 0.035, np.zeros_like(t))
        )
    segments = _skeleton(pose, props, rng)

    # Orthographic view with the body's forward axis `yaw` out of the image plane.
    yaw = np.radians(rng.uniform(15, 60)) * rng.choice([-1, 1]) + rng.choice([0, np.pi])
    cos, sin = np.cos(yaw + pose["turn"]), np.sin(yaw + pose["turn"])
    scale = rng.uniform(0.45, 0.8) * height
    ground = rng.uniform(0.82, 0.97) * height
    travel = scale * pose["forward"] * np.cos(yaw)
    camera = _camera(rng, travel, width)
    origin = rng.uniform(0.3, 0.7) * width - (travel - camera[0]).mean()

    def to_pixels(points: np.ndarray) -> np.ndarray:
        x = origin + scale * (points[:, 0] * cos + points[:, 2] * sin) - camera[0]
        return np.stack([x, ground - scale * points[:, 1] - camera[1]], -1)

    pixels = [(to_pixels(a), to_pixels(b), r * scale, part) for a, b, r, part in segments]

    margin = 4
    low = camera.min(axis=1)
    floor = ground - scale * rng.uniform(0.05, 0.5) - low[1] + margin
    canvas = _background(
        rng, height + np.ptp(camera[1]) + 2 * margin, width + np.ptp(camera[0]) + 2 * margin, floor
    )
    tops, lefts = camera[1] - low[1] + margin, camera[0] - low[0] + margin
    scene = np.stack(
        [canvas[y : y + height, x : x + width] for y, x in zip(tops, lefts, strict=True)]
    )

    # Clothes and props contrast with the room by a random factor, darker or brighter.
    luma = float(canvas.reshape(-1, 3).mean(0) @ _LUMA)
    contrast = rng.uniform(0.15, 0.45) if rng.random() < 0.5 else rng.uniform(2.0, 3.5)
    colours = {
        part: _colour(rng, min(luma * contrast * rng.uniform(0.8, 1.25), 0.95)) for part in _PARTS
    }
    _paint_figure(scene, pixels, colours)

    # Lamp light: an ambient level plus one pool of light.
    centre = rng.uniform([-0.2, -0.2], [1.2, 1.2]) * [width, height]
    reach = rng.uniform(0.3, 0.9) * width
    ambient = rng.uniform(0.25, 0.6)
    gx, gy = np.arange(width) - centre[0], np.arange(height)[:, None] - centre[1]
    light = ambient + (1 - ambient) * np.exp(-(gx**2 + gy**2) / (2 * reach**2))
    return scene * light[..., None].astype(np.float32)


def _dark_camera(scene: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a cheap camera records of a dim scene, uint8.

    A few photo-electrons per pixel with Poisson-Gaussian noise (signal-dependent variance plus
    read noise, in its Gaussian approximation), clipped at black by a 12-bit converter; then the
    camera's tone curve as one lookup table per channel: gamma, a colour cast, a lifted black
    level and a low gain that leaves the mean luma at 6.5-16 of 255.
    """
    electrons = np.float32(rng.uniform(4, 30) / scene.mean())
    read_noise = np.float32(rng.uniform(0.5, 3.0))
    signal = scene * electrons
    noise = rng.standard_normal(scene.shape, dtype=np.float32)
    full_scale = np.float32(4095 / (electrons * scene.max()))
    codes = np.clip((signal + np.sqrt(signal + read_noise**2) * noise) * full_scale, 0, 4095)
    codes = codes.astype(np.uint16)
    curve = np.linspace(0, 1, 4096) ** (1 / rng.uniform(1.8, 2.4))
    counts = [np.bincount(codes[..., channel].ravel(), minlength=4096) for channel in range(3)]
    # A sum, not a BLAS product: BLAS may split it over threads in an order that varies with the
    # process, and a rounding flip here changes every pixel of the clip.
    level = (np.stack(counts) * curve).sum(1) / codes[..., 0].size
    cast = np.exp(rng.normal(0, 0.2, 3))
    black, target = rng.uniform(1, 4), rng.uniform(6.5, 16)
    gain = (target - black) / ((level * cast) @ _LUMA)
    table = np.clip(np.rint(black + gain * cast * curve[:, None]), 0, 255).astype(np.uint8)
    return np.stack([table[codes[..., channel], channel] for channel in range(3)], -1)


def render_scene(
    action: str, rng: np.random.Generator, frames: int, size: tuple[int, int]
) -> np.ndarray:
    """The lit scene before the camera, float32 linear RGB `frames x H x W x 3`.

    Stand is Sit played backwards, exactly: the same draws, frames reversed.
    """
    width, height = size
    scene = _scene(action, rng, frames, width, height)
    return scene[::-1] if action == "Stand" else scene


def render_clip(
    action: str, rng: np.random.Generator, frames: int, size: tuple[int, int]
) -> np.ndarray:
    """One dark clip as the camera records it, uint8 `frames x H x W x 3`."""
    return _dark_camera(render_scene(action, rng, frames, size), rng)


# ------------------------------------------------------------------------------------ the data set


def clip_name(action: str, split: int, subset: str, index: int) -> str:
    """ARID-style `<Class>_<a>_<b>`: `a` tells the split's train (2s-1) and test (2s) clips apart,
    so that several generated splits can share one root; validation clips are `<Class>_v<s>_<b>`."""
    if subset == "validation":
        return f"{action}_v{split}_{index + 1}"
    group = 2 * split - (subset == "train")
    return f"{action}_{group}_{index + 1}"


def clip_generator(seed: int, subset: str, label: int, index: int) -> np.random.Generator:
    """The generator one clip is drawn from: its subset's stream of the seed, its class and index.
    Training and test clips keep the streams they always had, so a seed's train and test clips do
    not change when validation clips are written beside them."""
    if subset == "validation":
        return np.random.default_rng([seed, label, index, VALIDATION_STREAM])
    return np.random.default_rng(
        [seed + (TEST_SEED_OFFSET if subset == "test" else 0), label, index]
    )


def _write_clip(task: tuple[SynthConfig, str, int, int]) -> None:
    """Render and encode one clip; its generator depends only on (seed, subset, class, index)."""
    config, subset, label, index = task
    rng = clip_generator(config.seed, subset, label, index)
    action = ARID_CLASSES[label]
    frames = int(rng.integers(config.frames[0], config.frames[1] + 1))
    video = render_clip(action, rng, frames, config.size)
    path = (
        config.out / "clips_v1" / action / f"{clip_name(action, config.split, subset, index)}.mp4"
    )
    write_video(path, video, config.fps, "libx264", quality=int(rng.integers(18, 27)))


def _hidden(progress: bool | None) -> bool | None:
    """tqdm's `disable`: shown when asked, hidden when told, else only on a terminal."""
    return None if progress is None else not progress


def write_benchmark(config: SynthConfig) -> dict[str, int]:
    """Render every clip and write the ARID v1.0 list files (and a validation list when it has
    validation clips); returns the clips per subset."""
    if any(side % 2 for side in config.size) or config.frames[0] > config.frames[1]:
        raise ValueError(f"size must be even and frames a range, got {config.size} {config.frames}")
    counts = {
        "train": config.clips_per_class,
        "validation": config.val_clips_per_class,
        "test": config.test_clips_per_class,
    }
    tasks = [
        (config, subset, label, index)
        for subset, count in counts.items()
        for label in range(len(ARID_CLASSES))
        for index in range(count)
    ]
    for action in ARID_CLASSES:
        (config.out / "clips_v1" / action).mkdir(parents=True, exist_ok=True)
    workers = config.workers or os.cpu_count() or 1
    started = time.perf_counter()
    bar = tqdm(total=len(tasks), desc="clips", unit="clip", disable=_hidden(config.progress))
    with bar:
        if workers == 1:
            for task in tasks:
                _write_clip(task)
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_write_clip, tasks, chunksize=4):
                    bar.update()
    lists = config.out / "list_cvt"
    lists.mkdir(exist_ok=True)
    table = "".join(f"{label}\t{action}\n" for label, action in enumerate(ARID_CLASSES))
    (lists / "mapping_table.txt").write_text(table)
    for subset, count in counts.items():
        path = lists / f"ARID_split{config.split}_{subset}.txt"
        if subset == "validation" and not count:  # the recipes hold training clips out instead
            path.unlink(missing_ok=True)
            continue
        lines = [
            f"{label}\t{action}/{clip_name(action, config.split, subset, index)}.mp4"
            for label, action in enumerate(ARID_CLASSES)
            for index in range(count)
        ]
        text = "".join(f"{number}\t{line}\n" for number, line in enumerate(lines))
        path.write_text(text)
    seconds = time.perf_counter() - started
    log.info("wrote %d clips to %s in %.1f s, %d workers", len(tasks), config.out, seconds, workers)
    return {subset: count * len(ARID_CLASSES) for subset, count in counts.items()}
