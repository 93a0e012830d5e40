"""People and the objects they handle, as capsules with volume: the skeleton from the pose curves,
its placement in the room, and its rasterisation through the camera.

A body is two torso capsules side by side (wide from the front, narrow from the side), a head with
hair, limbs thinner than the torso, hands (open for a wave) and feet; its proportions, girth,
clothing colours and clothing patterns are drawn per person. Each capsule is shaded as a cylinder
seen side-on (bright along its axis, falling off towards the silhouette), so limbs read as round;
overlapping capsules are resolved per pixel by depth, and the room's depth hides what furniture
stands in front of.
"""

from dataclasses import dataclass, replace

import numpy as np

from training.synth import exact
from training.synth.camera import Mount
from training.synth.domains import Domain, draw, pick
from training.synth.motion import SIDES, Pose, Prop

PARTS = ("top", "bottom", "shoes", "skin", "hair", "cup", "bottle", "object", "cart")
"""What a capsule is; the body's palette has one albedo per part."""
PATTERNS = ("plain", "stripes", "mottled", "checks", "blocks")
"""Clothing patterns; which a domain uses is in `domains.Domain.clothing`."""
_GARMENTS = {"top": 0, "bottom": 1}
SIDE_SIGN = {"l": -1, "r": 1}
"""Which way along the body's z axis (to its right) each side lies."""

# Torso, neck to head centre, upper arm, forearm, thigh, shin: parts of the stature.
_LENGTHS = np.array([0.3, 0.11, 0.16, 0.15, 0.245, 0.245])


@dataclass(frozen=True)
class Segment:
    """A capsule from `start` to `end` (`F x 3`, metres) of `radius` metres."""

    start: np.ndarray
    end: np.ndarray
    radius: float
    part: str


@dataclass(frozen=True)
class Body:
    """One person's build and clothes."""

    stature: float
    girth: float
    lengths: np.ndarray
    """`_LENGTHS` with this person's proportions, in metres."""
    palette: np.ndarray
    """Albedo (linear RGB) per `PARTS` entry."""
    patterns: tuple[tuple[str, float, float], ...]
    """Per garment (top, bottom): pattern name, period (metres), contrast."""
    bare_forearms: bool
    """Short sleeves: the forearms are skin, so an arm crossing the chest stands out from it."""


def albedo(rng: np.random.Generator, luma: float) -> np.ndarray:
    """A random, mostly muted colour of the given luma (linear RGB, at most 1)."""
    colour = exact.exp(rng.uniform(-1, 1, 3) * rng.uniform(0.1, 0.8)).astype(np.float32)
    return np.minimum(colour * np.float32(luma / (colour * [0.299, 0.587, 0.114]).sum()), 1.0)


def _palette(rng: np.random.Generator) -> np.ndarray:
    """Clothes from near black to light (people wear dark clothes at night, not only), skin over
    the range of human skin, hair, and objects."""
    lumas = {
        "top": exact.exp(rng.uniform(exact.log(0.03), exact.log(0.7))),
        "bottom": exact.exp(rng.uniform(exact.log(0.03), exact.log(0.5))),
        "shoes": rng.uniform(0.02, 0.3),
        "skin": rng.uniform(0.08, 0.5),
        "hair": rng.uniform(0.02, 0.4),
        "cup": rng.uniform(0.3, 0.8),
        "bottle": rng.uniform(0.1, 0.6),
        "object": rng.uniform(0.1, 0.7),
        "cart": rng.uniform(0.15, 0.6),
    }
    return np.stack([albedo(rng, lumas[part]) for part in PARTS])


def draw_body(rng: np.random.Generator, domain: Domain) -> Body:
    """A person of the domain's statures, builds and clothing patterns."""
    stature = draw(rng, domain.stature)
    patterns = tuple(
        (pick(rng, domain.clothing), float(rng.uniform(0.05, 0.16)), float(rng.uniform(0.3, 0.6)))
        for _ in _GARMENTS
    )
    return Body(
        stature=stature,
        girth=draw(rng, domain.girth),
        lengths=stature * _LENGTHS * rng.uniform(0.92, 1.08, len(_LENGTHS)),
        palette=_palette(rng),
        patterns=patterns,
        bare_forearms=bool(rng.random() < 0.5),
    )


def recolour(body: Body, rng: np.random.Generator, brighter: bool) -> Body:
    """The same person in other clothes, lighter or darker than before (a redraw when a clip is
    not legible: away from the surround's grey level)."""
    palette = body.palette.copy()
    for part in ("top", "bottom", "shoes", "hair"):
        luma = rng.uniform(0.35, 0.85) if brighter else rng.uniform(0.005, 0.03)
        palette[PARTS.index(part)] = albedo(rng, luma)
    return replace(body, palette=palette)


def _direction(flex: np.ndarray, abduct: np.ndarray, side: int) -> np.ndarray:
    """Unit limb direction: hanging down, swung forward by `flex`, then outward by `abduct`."""
    return np.stack(
        [np.sin(flex) * np.cos(abduct), -np.cos(flex) * np.cos(abduct), side * np.sin(abduct)], -1
    )


def skeleton(pose: Pose, props: list[Prop], body: Body) -> list[Segment]:
    """Capsules in the body's own frame (x forward, y up from the floor, z to its right), metres;
    the body stands on its lowest foot, then leaves the ground by `lift`."""
    torso, head, upper_arm, forearm, thigh, shin = body.lengths
    limb = 0.027 * body.stature * body.girth
    lean = pose["lean"]
    zero = np.zeros_like(lean)
    pelvis = np.stack([zero, zero, zero], -1)
    neck = pelvis + torso * np.stack([np.sin(lean), np.cos(lean), zero], -1)
    head_angle = 0.6 * lean + pose["neck"]
    head_dir = np.stack([np.sin(head_angle), np.cos(head_angle), zero], -1)
    skull = neck + head * head_dir
    chest = 0.075 * body.stature * body.girth
    segments = [
        Segment(pelvis + [0, 0, side * chest * 0.7], neck + [0, -0.04, side * chest], chest, "top")
        for side in (-1, 1)
    ]
    segments += [
        Segment(neck, skull, 0.032 * body.stature, "skin"),
        Segment(skull, skull, 0.058 * body.stature, "skin"),
        Segment(skull + 0.012 * head_dir - [0.02, 0, 0], skull, 0.06 * body.stature, "hair"),
    ]
    hands, feet = {}, []
    sleeve = "skin" if body.bare_forearms else "top"
    for side in SIDES:
        sign = SIDE_SIGN[side]
        flex, abduct = pose[f"{side}_shoulder"], pose[f"{side}_abduct"]
        shoulder = neck + [0, -0.03, sign * (chest + limb)]
        elbow = shoulder + upper_arm * _direction(flex, abduct, sign)
        forearm_dir = _direction(
            flex + pose[f"{side}_elbow"], abduct + pose[f"{side}_elbow_abduct"], sign
        )
        hands[side] = elbow + forearm * forearm_dir
        opened = pose.get(f"{side}_open", zero)[:, None]
        fingers = hands[side] + (0.03 + 0.06 * opened) * forearm_dir
        hip = pelvis + [0, 0, sign * chest * 0.8]
        knee = hip + thigh * _direction(pose[f"{side}_hip"], zero, sign)
        ankle = knee + shin * _direction(pose[f"{side}_hip"] - pose[f"{side}_knee"], zero, sign)
        toe = ankle + [0.13, -0.02, 0]
        feet += [ankle, toe]
        segments += [
            Segment(hip, knee, limb * 1.35, "bottom"),
            Segment(knee, ankle, limb * 1.1, "bottom"),
            Segment(ankle, toe, limb * 0.9, "shoes"),
            Segment(shoulder, elbow, limb, "top"),
            Segment(elbow, hands[side], limb * 0.85, sleeve),
            Segment(hands[side], fingers, limb * 0.8, "skin"),
        ]
    height = 0.02 - np.min([point[:, 1] for point in feet], axis=0) + pose["lift"] * body.stature
    segments += [_prop(prop, hands, -height) for prop in props]
    offset = np.stack([zero, height, zero], -1)
    return [replace(s, start=s.start + offset, end=s.end + offset) for s in segments]


def _prop(prop: Prop, hands: dict[str, np.ndarray], floor: np.ndarray) -> Segment:
    """A held object stands on its hand, tipped by its tilt; a pushed one (a cart, a box) stands
    on the floor (at height `floor` of the body's frame) just in front of both hands and reaches
    up to them, so that it moves as they push."""
    if prop.anchor == "hands":
        middle = (hands["l"] + hands["r"]) / 2 + [prop.radius + 0.03, 0, 0]
        bottom = np.stack([middle[:, 0], floor + prop.radius, middle[:, 2]], -1)
        return Segment(bottom, middle - [0, 0.05, 0], prop.radius, prop.kind)
    base = hands[prop.anchor][np.maximum(np.arange(len(floor)), prop.grasp)]
    tipped, inward = np.sin(prop.tilt), -SIDE_SIGN[prop.anchor]
    up = np.stack(
        [tipped * np.cos(prop.across), np.cos(prop.tilt), inward * tipped * np.sin(prop.across)],
        -1,
    )
    return Segment(base, base + prop.length * up, prop.radius, prop.kind)


def place(
    segments: list[Segment], root: np.ndarray, heading: float, pose: Pose, stature: float
) -> list[Segment]:
    """Body-frame capsules into the room: turned to `heading` (plus the pose's turn; radians about
    the vertical, 0 = facing into the room), at `root` moved `forward` along the heading."""
    angle = heading + pose["turn"]
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    walked = root + (stature * pose["forward"])[:, None] * [np.sin(heading), 0, np.cos(heading)]

    def world(points: np.ndarray) -> np.ndarray:
        x = walked[:, 0:1] + points[:, 0:1] * sin + points[:, 2:3] * cos
        z = walked[:, 2:3] + points[:, 0:1] * cos - points[:, 2:3] * sin
        return np.concatenate([x, points[:, 1:2], z], -1)

    return [replace(s, start=world(s.start), end=world(s.end)) for s in segments]


@dataclass(frozen=True)
class Layer:
    """A person through the camera, per frame and pixel: how much of the pixel they cover (after
    occlusion), which part is seen there, and its shading (volume times clothing pattern)."""

    coverage: np.ndarray
    part: np.ndarray
    shade: np.ndarray
    box: tuple[slice, slice]
    """Rows and columns outside which the person covers nothing in any frame."""


def _pattern(
    name: str, period: float, contrast: float, along: np.ndarray, across: np.ndarray
) -> np.ndarray:
    """Albedo factor of a clothing pattern at (metres along the capsule, -1..1 across it)."""
    if name == "stripes":
        return 1 - contrast * (np.sin(2 * np.pi * along / period) > 0)
    if name == "mottled":
        return 1 + contrast * 0.5 * np.sin(9.0 * along / period) * np.sin(5.0 * across + along)
    if name == "checks":
        return 1 - contrast * ((np.sin(2 * np.pi * along / period) > 0) ^ (across > 0))
    if name == "blocks":
        return 1 - contrast * (np.sin(np.pi * along / (3 * period)) > 0)
    return np.ones_like(along)


def _bilinear(field: np.ndarray, height: int, width: int) -> np.ndarray:
    """`F x h x w` samples on every other pixel, upsampled to `F x height x width`."""
    rows = np.minimum(np.arange(height, dtype=np.float32) / 2, field.shape[1] - 1)
    cols = np.minimum(np.arange(width, dtype=np.float32) / 2, field.shape[2] - 1)
    for axis, positions in ((1, rows), (2, cols)):
        low = np.minimum(positions.astype(int), max(field.shape[axis] - 2, 0))
        high = np.minimum(low + 1, field.shape[axis] - 1)
        shape = [1, 1, 1]
        shape[axis] = len(positions)
        frac = (positions - low).reshape(shape)
        field = np.take(field, low, axis) * (1 - frac) + np.take(field, high, axis) * frac
    return field


def rasterise(
    segments: list[Segment], body: Body, mount: Mount, shift: np.ndarray, room_depth: np.ndarray
) -> Layer:
    """Draw capsules through `mount` into frames `F x H x W` (the canvas moved by `shift`, `F x 2`)
    behind whatever of the room (`room_depth`, `F x H x W`) is nearer.

    Distances are computed on every other pixel of each frame's box around the figure, for all
    frames and capsules at once, and upsampled: a distance field is smooth, so its upsampled zero
    crossing is still a crisp edge.
    """
    frames, height, width = room_depth.shape
    starts, start_depth = mount.project(np.stack([s.start for s in segments], 1))
    ends, end_depth = mount.project(np.stack([s.end for s in segments], 1))
    starts = (starts - shift[:, None]).astype(np.float32)
    ends = (ends - shift[:, None]).astype(np.float32)
    start_depth, end_depth = start_depth.astype(np.float32), end_depth.astype(np.float32)
    radii = np.array([s.radius for s in segments], np.float32) * np.float32(mount.focal)
    radii = radii / start_depth
    lengths = np.sqrt(((np.stack([s.end - s.start for s in segments], 1)) ** 2).sum(-1))
    lengths = lengths.astype(np.float32)
    points = np.concatenate([starts, ends], 1)
    reach = radii.max(1) + 2
    low = np.floor(points.min(1) - reach[:, None]).astype(int)
    high = np.ceil(points.max(1) + reach[:, None]).astype(int)
    size = np.minimum((high - low).max(0), [width, height]) // 2 * 2
    low = np.clip(low, 0, np.maximum([width, height] - size, 0))
    coverage = np.zeros((frames, height, width), np.float32)
    part = np.zeros((frames, height, width), np.uint8)
    shade = np.zeros((frames, height, width), np.float32)
    if (size < 4).any():
        return Layer(coverage, part, shade, (slice(0, 0), slice(0, 0)))

    xs = (low[:, 0, None] + np.arange(0, size[0], 2)).astype(np.float32)[:, None, None, :]
    ys = (low[:, 1, None] + np.arange(0, size[1], 2)).astype(np.float32)[:, None, :, None]
    ax, ay = starts[..., 0, None, None], starts[..., 1, None, None]
    bx, by = ends[..., 0, None, None] - ax, ends[..., 1, None, None] - ay
    px, py = xs + 0.5 - ax, ys + 0.5 - ay
    length2 = bx * bx + by * by + 1e-6
    along = np.clip((px * bx + py * by) / length2, 0.0, 1.0)
    dx, dy = px - along * bx, py - along * by
    distance = np.sqrt(dx * dx + dy * dy)
    r = radii[..., None, None]
    signed = distance - r
    depth = start_depth[..., None, None] + along * (end_depth - start_depth)[..., None, None]
    chosen = np.argmin(np.where(signed < 0.5, depth, np.inf), axis=1)[:, None]

    def take(values: np.ndarray) -> np.ndarray:
        return np.take_along_axis(np.broadcast_to(values, signed.shape), chosen, 1)[:, 0]

    radius = take(r)
    roundness = np.sqrt(np.clip(1 - (take(distance) / radius) ** 2, 0, 1))
    metres = take(along) * take(lengths[..., None, None])
    across = (take(dx) * take(by) - take(dy) * take(bx)) / np.sqrt(take(length2)) / radius
    parts = np.array([PARTS.index(s.part) for s in segments], np.uint8)[chosen[:, 0]]
    texture = np.ones_like(metres)
    for garment, index in _GARMENTS.items():
        factor = _pattern(*body.patterns[index], metres, across)
        texture = np.where(parts == PARTS.index(garment), factor, texture)

    fine = {
        "coverage": np.clip(0.5 - signed.min(1), 0, 1),
        "shade": (0.3 + 0.7 * roundness) * texture,
        "depth": take(depth),
    }
    fine = {name: _bilinear(field, size[1], size[0]) for name, field in fine.items()}
    parts = parts.repeat(2, 1).repeat(2, 2)[:, : size[1], : size[0]]
    for frame, (x, y) in enumerate(low):
        box = (frame, slice(y, y + size[1]), slice(x, x + size[0]))
        hidden = fine["depth"][frame] >= room_depth[box]
        coverage[box] = np.where(hidden, 0, fine["coverage"][frame])
        part[box], shade[box] = parts[frame], fine["shade"][frame]
    top, bottom = low.min(0), low.max(0) + size
    return Layer(coverage, part, shade, (slice(top[1], bottom[1]), slice(top[0], bottom[0])))
