"""The 11 ARID actions as hand-made joint-angle curves, each actor with a style of their own.

No motion-capture data can be had offline here (no BVH file is on this machine, packages included),
so the motion is keyframed: eased tweens and gait cycles whose timing, amplitude and speed are drawn
per clip, on top of a per-actor `Style` (how big and how fast this person moves) and a slow sway, so
that no two clips of an action move the same. The actions that a single arm gesture could blur
together are made different in what they do: Drink brings a cup to the mouth and tips the head
back, Pour tips a bottle across the body over a cup held in the other hand and looks down at it,
Wave raises an open hand high and swings it side to side, fast. Sit and Stand are the same curves;
Stand is rendered backwards (`scene.render_scene`). Whichever hand an action is drawn with, the
scene puts the busier arm on the camera's side (`busier_side`, `mirrored`), and an actor doing one
of the `GESTURES` faces the camera's half of the room, as ARID's actors, filmed to be seen, did.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from training.synth import exact

Pose = dict[str, np.ndarray]
"""Per-frame angles (radians) and displacements (statures), see `neutral_pose`."""

SIDES = ("l", "r")
GESTURES = ("Drink", "Pour", "Wave")
"""The actions done with the hands, in place: an actor shows them to the camera (`scene`)."""


@dataclass(frozen=True)
class Style:
    """How this actor moves: `amplitude` scales gestures, `speed` scales their pace."""

    amplitude: float
    speed: float
    seconds: float
    """The clip's length: cycle rates are in Hz, one-shot actions in parts of the clip."""


@dataclass
class Prop:
    """An object the action is about, drawn as a capsule (see `body.skeleton`)."""

    anchor: str
    """"l" or "r" (held in that hand), or "hands" (pushed in front of both)."""
    length: float
    """Metres; a pushed prop reaches from the floor to the hands instead."""
    radius: float
    tilt: np.ndarray
    """Angle from upright, tipping forward (+); a pushed prop stands upright."""
    kind: str
    """Its part name, for its colour: "cup", "bottle", "object" or "cart"."""
    across: float = 0.0
    """How far the tipping turns from forward towards the body's other side: a bottle pours
    into the cup in the other hand."""
    grasp: int = 0
    """Frame at which the hand takes it; before that it stays where the hand will take it."""


Action = Callable[[np.ndarray, np.random.Generator, Pose, list[Prop], Style], None]


def ease(x: np.ndarray) -> np.ndarray:
    """0 before 0, 1 after 1, a cosine S-curve between: smooth starts and stops."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def tween(u: np.ndarray, keys: list[tuple[float, float]]) -> np.ndarray:
    """Eased interpolation through (time, value) keys, held constant outside them: each key-to-key
    step adds its change once the time has passed it, so the sum of eased steps is the curve."""
    value = np.full_like(u, keys[0][1])
    for (t0, v0), (t1, v1) in pairwise(keys):
        value += (v1 - v0) * ease((u - t0) / (t1 - t0))
    return value


def _wobble(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """Slow random sway, so nobody stands perfectly still."""
    freqs = rng.uniform(0.3, 1.5, 2)
    phases = rng.uniform(0, 2 * np.pi, 2)
    return amplitude * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]).mean(0)


def neutral_pose(t: np.ndarray, rng: np.random.Generator) -> Pose:
    """Standing at rest. Angles: lean (torso from vertical, forward +), neck (head tilt, forward
    +), per side shoulder/hip flexion from hanging down (forward +), arm abduction (outward +),
    elbow flexion and elbow abduction (added to the upper arm's), knee flexion (shin backward +);
    forward/lift move the body (statures), turn adds to its heading."""
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


def _phase(t: np.ndarray, rng: np.random.Generator, style: Style, hz: float) -> np.ndarray:
    """A cycle's phase at `hz` (times the actor's speed), from a random start."""
    return 2 * np.pi * hz * style.speed * style.seconds * t + rng.uniform(0, 2 * np.pi)


def _one_shot(
    t: np.ndarray, rng: np.random.Generator, style: Style, low: float, high: float
) -> np.ndarray:
    """Local time of an action that takes a random part [low, high] of the clip (less for a fast
    actor) at a random time: 0 at its start, 1 at its end."""
    duration = min(rng.uniform(low, high) / style.speed, 0.85)
    start = rng.uniform(0.05, 0.95 - duration)
    return (t - start) / duration


def _repeats(
    t: np.ndarray, rng: np.random.Generator, style: Style, low: float, high: float
) -> np.ndarray:
    """Local time of one or two repeats of a gesture: like `_one_shot`, or two in a row."""
    if rng.random() < 0.6:
        return _one_shot(t, rng, style, low, high)
    return (t * 2 + rng.uniform(-0.1, 0.1)) % 1.0


def _gait(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, style: Style, hz: float, swing: float
) -> np.ndarray:
    """Alternating leg swing with knee flexion while the leg swings through; returns the phase."""
    phase = _phase(t, rng, style, hz)
    knee = swing * rng.uniform(1.3, 2.0)
    for sign, side in ((1, "l"), (-1, "r")):
        pose[f"{side}_hip"] = sign * swing * np.sin(phase)
        pose[f"{side}_knee"] = np.radians(5) + knee * exact.power(
            np.maximum(0, sign * np.cos(phase)), 1.5
        )
    return phase


def _walk(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop], style: Style
) -> None:
    hz, swing = rng.uniform(0.8, 1.1), np.radians(rng.uniform(18, 28)) * style.amplitude
    phase = _gait(t, rng, pose, style, hz, swing)
    for sign, side in ((-1, "l"), (1, "r")):
        pose[f"{side}_shoulder"] = sign * 0.8 * swing * np.sin(phase)
    pose["forward"] = 1.6 * np.sin(swing) * hz * style.speed * style.seconds * t


def _run(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop], style: Style
) -> None:
    hz, swing = rng.uniform(1.3, 1.7), np.radians(rng.uniform(35, 50)) * style.amplitude
    phase = _gait(t, rng, pose, style, hz, swing)
    pose["lean"] += np.radians(rng.uniform(10, 18))
    for sign, side in ((-1, "l"), (1, "r")):
        pose[f"{side}_shoulder"] = sign * swing * np.sin(phase)
        pose[f"{side}_elbow"] = np.full_like(t, np.radians(rng.uniform(80, 100)))
    pose["lift"] = 0.04 * np.abs(np.sin(phase))
    pose["forward"] = 2.2 * np.sin(swing) * hz * style.speed * style.seconds * t


def _jump(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop], style: Style
) -> None:
    height = rng.uniform(0.08, 0.2) * style.amplitude
    crouch = np.radians(rng.uniform(50, 80))
    u = _repeats(t, rng, style, 0.55, 0.8)
    keys = [(0, 0), (0.25, crouch), (0.38, 0), (0.5, 0.5), (0.62, 0.2), (0.75, crouch * 0.8)]
    knee = tween(u, [*keys, (0.95, 0)])
    pose["l_knee"] = pose["r_knee"] = knee
    pose["l_hip"] = pose["r_hip"] = knee * 0.6
    pose["lean"] += knee * 0.5
    arms = tween(u, [(0, 0), (0.25, -0.7), (0.4, 2.6), (0.6, 2.2), (0.8, 0.3), (1, 0)])
    pose["l_shoulder"] = pose["r_shoulder"] = arms
    pose["lift"] = height * np.sin(np.pi * np.clip((u - 0.38) / 0.3, 0, 1))


def _wave(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop], style: Style
) -> None:
    """An open hand raised above the shoulder, the forearm swinging side to side at 2-3.5 Hz."""
    sides = SIDES if rng.random() < 0.2 else (SIDES[int(rng.integers(2))],)
    u = _one_shot(t, rng, style, 0.7, 0.9)
    raised = tween(u, [(0, 0), (0.12, 1), (0.88, 1), (1, 0)])
    swing = np.sin(_phase(t, rng, style, rng.uniform(2.0, 3.5)))
    for side in sides:
        pose[f"{side}_abduct"] += raised * np.radians(rng.uniform(120, 150))
        pose[f"{side}_shoulder"] += raised * np.radians(rng.uniform(5, 25))
        pose[f"{side}_elbow"] = raised * np.radians(rng.uniform(10, 30))
        amplitude = np.radians(rng.uniform(25, 40)) * style.amplitude
        pose[f"{side}_elbow_abduct"] = raised * (np.radians(15) + amplitude * swing)
        pose[f"{side}_open"] = raised


def _push(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop], style: Style
) -> None:
    """Both hands on a cart or box at waist height, which moves forward as the arms extend."""
    pushes = rng.uniform(0.8, 1.5)
    extend = ease(0.5 - 0.5 * np.cos(_phase(t, rng, style, pushes)))
    stance = np.radians(rng.uniform(10, 20))
    pose["l_hip"], pose["r_hip"] = np.full_like(t, stance), np.full_like(t, -stance)
    pose["lean"] += np.radians(rng.uniform(15, 25)) + extend * np.radians(8)
    for side in SIDES:
        pose[f"{side}_shoulder"] = np.full_like(t, np.radians(rng.uniform(55, 70)))
        pose[f"{side}_abduct"] = np.full_like(t, np.radians(5))
        pose[f"{side}_elbow"] = np.radians(90) * (1 - extend) * style.amplitude + np.radians(5)
    pose["forward"] = 0.2 * np.cumsum(np.maximum(np.diff(extend, prepend=extend[0]), 0))
    props.append(Prop("hands", 0.0, rng.uniform(0.18, 0.28), t * 0, "cart"))


def _pick(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop], style: Style
) -> None:
    """Bend down to an object on the floor and bring it up in one hand."""
    side = SIDES[int(rng.integers(2))]
    u = _one_shot(t, rng, style, 0.55, 0.75)
    down = tween(u, [(0, 0), (0.4, 1), (0.55, 1), (1, 0)])
    pose["lean"] += down * np.radians(rng.uniform(55, 75))
    pose["l_hip"] = pose["r_hip"] = down * np.radians(rng.uniform(25, 45))
    pose["l_knee"] = pose["r_knee"] = down * np.radians(rng.uniform(45, 75))
    pose[f"{side}_shoulder"] = down * np.radians(rng.uniform(20, 35)) + (u > 0.5) * np.radians(15)
    pose[f"{side}_elbow"] = tween(u, [(0, 0.2), (0.4, 0.05), (0.55, 0.05), (1, 1.2)])
    grasp = int(np.argmin(np.abs(u - 0.47)))
    size = rng.uniform(0.05, 0.09)
    props.append(Prop(side, size, size * 0.8, np.full_like(t, np.pi / 2), "object", grasp=grasp))


def _drink(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop], style: Style
) -> None:
    """A cup brought up to the mouth and tipped, the head tipping back with it."""
    side = SIDES[int(rng.integers(2))]
    u = _repeats(t, rng, style, 0.6, 0.85)
    up = tween(u, [(0, 0), (0.3, 1), (0.7, 1), (1, 0)])
    sip = tween(u, [(0, 0), (0.3, 0), (0.45, 1), (0.6, 1), (0.7, 0)])
    pose[f"{side}_shoulder"] = np.radians(10) + up * np.radians(rng.uniform(30, 45))
    pose[f"{side}_elbow"] = np.radians(40) + up * np.radians(rng.uniform(80, 95))
    pose["neck"] -= sip * np.radians(rng.uniform(20, 35)) * style.amplitude
    pose["lean"] -= sip * np.radians(rng.uniform(3, 8))
    pose[f"{side}_abduct"] += up * np.radians(rng.uniform(20, 45))  # the elbow comes out
    tilt = up * np.radians(rng.uniform(20, 40)) + sip * np.radians(rng.uniform(40, 60))
    props.append(Prop(side, rng.uniform(0.09, 0.14), rng.uniform(0.03, 0.042), tilt, "cup"))


def _pour(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop], style: Style
) -> None:
    """A cup held in front of the belly; the bottle, held above it and to the side, tips across
    the body over it and back; eyes on it."""
    bottle = SIDES[int(rng.integers(2))]
    cup = "l" if bottle == "r" else "r"
    u = _repeats(t, rng, style, 0.6, 0.85)
    tip = tween(u, [(0, 0), (0.3, 1), (0.75, 1), (1, 0)])
    pose[f"{bottle}_shoulder"] = np.radians(rng.uniform(45, 60)) + tip * np.radians(10)
    pose[f"{bottle}_elbow"] = np.full_like(t, np.radians(rng.uniform(40, 60)))
    pose[f"{cup}_shoulder"] = np.full_like(t, np.radians(rng.uniform(25, 35)))
    pose[f"{cup}_abduct"] -= np.radians(rng.uniform(10, 20))  # towards the middle
    pose[f"{cup}_elbow"] = np.full_like(t, np.radians(rng.uniform(55, 70)))
    pose["neck"] += tip * np.radians(rng.uniform(15, 30))
    pose["lean"] += tip * np.radians(rng.uniform(3, 8))
    tilt = tip * np.radians(rng.uniform(100, 140)) * min(style.amplitude, 1.1)
    across = np.radians(rng.uniform(50, 75))
    length, radius = rng.uniform(0.22, 0.32), rng.uniform(0.035, 0.045)
    props.append(Prop(bottle, length, radius, tilt, "bottle", across=across))
    props.append(
        Prop(cup, rng.uniform(0.09, 0.14), rng.uniform(0.03, 0.042), np.zeros_like(t), "cup")
    )


def _sit(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop], style: Style
) -> None:
    u = _one_shot(t, rng, style, 0.5, 0.7)
    seat = tween(u, [(0, 0), (1, 1)])
    pose["l_hip"] = pose["r_hip"] = seat * np.radians(rng.uniform(80, 95))
    pose["l_knee"] = pose["r_knee"] = seat * np.radians(rng.uniform(80, 95))
    pose["lean"] += tween(u, [(0, 0), (0.45, np.radians(rng.uniform(25, 40))), (1, 0.1)])
    for side in SIDES:
        pose[f"{side}_shoulder"] += tween(u, [(0, 0), (0.45, 0.6), (1, 0.35)]) * style.amplitude
        pose[f"{side}_elbow"] += seat * np.radians(40)
    pose["forward"] = -0.15 * seat


def _turn(
    t: np.ndarray, rng: np.random.Generator, pose: Pose, props: list[Prop], style: Style
) -> None:
    u = _one_shot(t, rng, style, 0.45, 0.7)
    angle = np.radians(rng.uniform(120, 200)) * rng.choice([-1, 1])
    pose["turn"] = tween(u, [(0, 0), (1, 1)]) * angle
    steps = 2 * np.pi * rng.uniform(1.5, 2.5) * np.clip(u, 0, 1)
    for sign, side in ((1, "l"), (-1, "r")):
        lift = np.maximum(0, sign * np.sin(steps)) * ((u > 0) & (u < 1))
        pose[f"{side}_hip"] = lift * np.radians(20) * style.amplitude
        pose[f"{side}_knee"] = lift * np.radians(35) * style.amplitude


ACTIONS: dict[str, Action] = {
    "Drink": _drink,
    "Jump": _jump,
    "Pick": _pick,
    "Pour": _pour,
    "Push": _push,
    "Run": _run,
    "Sit": _sit,
    "Stand": _sit,  # rendered from Sit, then played backwards: see `scene.render_scene`
    "Turn": _turn,
    "Walk": _walk,
    "Wave": _wave,
}


def perform(
    action: str, rng: np.random.Generator, frames: int, fps: float
) -> tuple[Pose, list[Prop]]:
    """One actor's pose curves and props for `action` over `frames` frames."""
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    style = Style(rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.25), frames / fps)
    pose = neutral_pose(t, rng)
    props: list[Prop] = []
    ACTIONS[action](t, rng, pose, props, style)
    if not props and rng.random() < 0.25:  # people carry things whatever they do
        hand = SIDES[int(rng.integers(2))]
        props.append(Prop(hand, rng.uniform(0.08, 0.25), 0.035, np.zeros_like(t), "object"))
    return pose, props


ARM_JOINTS = ("shoulder", "abduct", "elbow", "elbow_abduct")


def busier_side(pose: Pose) -> str:
    """The arm that travels further over the clip: the one the action is done with. Summed with
    `math.fsum` (exactly rounded): numpy's reductions may round otherwise on another CPU."""

    def travel(side: str) -> float:
        return math.fsum(np.concatenate([np.abs(np.diff(pose[f"{side}_{j}"])) for j in ARM_JOINTS]))

    return max(SIDES, key=travel)


def mirrored(pose: Pose, props: list[Prop]) -> tuple[Pose, list[Prop]]:
    """The same action done with the other hand: every left and right curve and prop swapped
    (abduction is outward on either side, so the swapped curves are the mirror image)."""
    other = {"l": "r", "r": "l"}

    def swap(name: str) -> str:
        return other[name[0]] + name[1:] if name[1:2] == "_" else name

    return {swap(name): curve for name, curve in pose.items()}, [
        replace(prop, anchor=other.get(prop.anchor, prop.anchor)) for prop in props
    ]


def idle(rng: np.random.Generator, frames: int) -> Pose:
    """A bystander: standing, swaying, now and then shifting weight; never a labelled action."""
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    pose = neutral_pose(t, rng)
    shift = tween((t - rng.uniform(0.2, 0.8)) / 0.3, [(0, 0), (1, 1)]) * np.radians(6)
    pose["l_hip"] += shift
    pose["r_hip"] -= shift
    return pose
