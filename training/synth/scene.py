"""A room at night with someone in it, as the camera sees it before exposure: linear light per
frame and pixel.

The room is a box (floor, walls, ceiling) with furniture and clutter (boxes on the floor and on the
furniture), all ray-cast once per clip from the camera's mount onto a canvas a little larger than
the picture, so that shake and pans are crops of it. It is lit by a few lamps with inverse-square
falloff (no shadows); some lamps and lit windows are in view and clip; headlights sweep across the
walls in some clips. The actor stands in front, sometimes behind a table or sofa that hides their
legs; in some clips a bystander idles further back (never doing a labelled action).
"""

from dataclasses import dataclass, replace

import numpy as np

from training.synth import exact
from training.synth.body import (
    Body,
    Layer,
    Segment,
    albedo,
    draw_body,
    place,
    rasterise,
    recolour,
    skeleton,
)
from training.synth.camera import LIGHTS, Mount, aim, dot, offsets
from training.synth.domains import DOMAINS, Domain, draw, pick
from training.synth.motion import GESTURES, busier_side, idle, mirrored, perform

WALLS = ("plain", "blotchy", "panelled", "brick", "tiled")
"""Wall textures; which a domain uses is in `domains.Domain.walls`."""
_FLOORS = ("boards", "carpet", "concrete")


@dataclass(frozen=True)
class Person:
    """Someone in the picture: their build and clothes, their rasterised layer and the light
    falling on them per frame (`F x 3`)."""

    body: Body
    layer: Layer
    light: np.ndarray


@dataclass(frozen=True)
class Scene:
    """A clip before the camera: the lit room per frame, the people over it (the actor last) and
    the kind of light (an "infrared" scene is filmed in greyscale)."""

    room: np.ndarray
    people: tuple[Person, ...]
    light: str

    @property
    def actor(self) -> Person:
        return self.people[-1]

    def frames(self) -> np.ndarray:
        """Linear RGB `F x H x W x 3`: the people composited over the room."""
        frames = self.room.copy()
        for person in self.people:
            layer = person.layer
            box = (slice(None), *layer.box)
            part, shade, coverage = layer.part[box], layer.shade[box], layer.coverage[box]
            # A channel at a time: numpy broadcasts against a last axis of 3 several times slower.
            for channel, seen in enumerate(np.moveaxis(frames[box], -1, 0)):
                colour = np.take(person.body.palette[:, channel], part) * shade
                colour *= person.light[:, channel, None, None]
                seen += coverage * (colour - seen)
        return frames

    def reversed(self) -> "Scene":
        """The clip played backwards (Stand is Sit reversed)."""
        people = tuple(
            Person(
                person.body,
                replace(
                    person.layer,
                    coverage=person.layer.coverage[::-1],
                    part=person.layer.part[::-1],
                    shade=person.layer.shade[::-1],
                ),
                person.light[::-1],
            )
            for person in self.people
        )
        return replace(self, room=self.room[::-1], people=people)

    def recoloured(self, rng: np.random.Generator, brighter: bool, light: float) -> "Scene":
        """The same clip with the actor in other clothes, lighter or darker, and `light` times
        the light on them (as if they stood under a lamp)."""
        body = recolour(self.actor.body, rng, brighter)
        actor = replace(self.actor, body=body, light=self.actor.light * np.float32(light))
        return replace(self, people=(*self.people[:-1], actor))


@dataclass(frozen=True)
class _Lamp:
    position: np.ndarray
    colour: np.ndarray
    power: float
    radius: float
    """Size of the glowing bulb or shade, metres; drawn where the camera sees it."""


def _texture(kind: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Albedo factor of a surface pattern at surface coordinates (metres)."""
    waves = rng.uniform(0.5, 3.0, (3, 2)) * rng.choice([-1, 1], (3, 2))
    phases = rng.uniform(0, 2 * np.pi, 3)
    blotch = sum(np.sin(a * u + b * v + p) for (a, b), p in zip(waves, phases, strict=True)) / 3
    if kind in ("plain", "concrete"):
        return 1 + 0.05 * blotch
    if kind in ("blotchy", "carpet"):
        return 1 + 0.2 * blotch + 0.08 * np.sin(23 * u) * np.sin(19 * v)
    if kind == "panelled":
        width = rng.uniform(0.5, 1.2)
        seam = (u / width) % 1.0 < 0.04
        return (1 - 0.15 * (np.floor(u / width) % 2)) * (1 - 0.5 * seam) * (1 + 0.05 * blotch)
    if kind == "boards":
        width = rng.uniform(0.1, 0.25)
        return (0.85 + 0.3 * ((np.floor(u / width) * 0.618) % 1.0)) * (1 + 0.08 * blotch)
    if kind == "brick":
        row = np.floor(v / 0.075)
        offset = (u / 0.22 + 0.5 * (row % 2)) % 1.0
        mortar = ((v / 0.075) % 1.0 < 0.15) | (offset < 0.06)
        return np.where(mortar, 1.5, 0.85 + 0.3 * ((row * 0.37 + np.floor(u / 0.22)) * 0.61 % 1))
    if kind == "tiled":
        size = rng.uniform(0.15, 0.3)
        grout = ((u / size) % 1.0 < 0.06) | ((v / size) % 1.0 < 0.06)
        return np.where(grout, 0.45, 1.0 + 0.05 * blotch)
    raise ValueError(f"unknown texture {kind!r}")


Box = tuple[np.ndarray, np.ndarray]


def _boxes(rng: np.random.Generator, width: float, depth: float, near: float) -> list[Box]:
    """Furniture along the walls, clutter on the floor and on the furniture: `(low, high)`
    corners of boxes, metres."""
    boxes = []
    for _ in range(int(rng.integers(2, 6))):
        size = rng.uniform([0.4, 0.4, 0.3], [1.6, 2.0, 0.7])
        if rng.random() < 0.5:  # against the back wall
            x = rng.uniform(-width / 2, width / 2 - size[0])
            low = np.array([x, 0, depth - size[2]])
        else:  # against a side wall
            side = rng.choice([-1, 1])
            z = rng.uniform(near, depth - size[0])
            x = width / 2 - size[2] if side > 0 else -width / 2
            low, size = np.array([x, 0, z]), size[[2, 1, 0]]
        boxes.append((low, low + size))
    for _ in range(int(rng.integers(2, 8))):
        size = rng.uniform(0.1, 0.45, 3)
        below = boxes[int(rng.integers(len(boxes)))] if rng.random() < 0.5 else None
        if below is None:
            low = np.array([rng.uniform(-width / 2, width / 2 - size[0]), 0, 0])
            low[2] = rng.uniform(near, depth - size[2])
        else:
            low = np.array([rng.uniform(below[0][0], below[1][0]), below[1][1], below[0][2]])
        boxes.append((low, low + size))
    return boxes


def _cast(
    mount: Mount, height: int, width: int, room: tuple[float, float, float], boxes: list[Box]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ray-cast the canvas: depth, hit point, normal and surface number per pixel (0 floor,
    1 ceiling, 2 back wall, 3/4 side walls, 5 front wall, 6... boxes).

    The ray parameters are held axis first (`3 x H x W`), so that a box's entry and exit are
    elementwise maxima and minima of three planes rather than reductions over a length-3 axis,
    which numpy does slowly; the normals of boxes' faces are built once, for the nearest box."""
    rays = mount.rays(height, width)
    origin = mount.position.astype(np.float32)
    room_width, ceiling, depth = room
    inverse = np.ascontiguousarray(
        np.moveaxis(1 / np.where(np.abs(rays) < 1e-6, 1e-6, rays), -1, 0)
    )
    planes = [
        (1, 0.0),
        (1, ceiling),
        (2, depth),
        (0, -room_width / 2),
        (0, room_width / 2),
        (2, 0.0),
    ]
    t = np.stack([(value - origin[axis]) * inverse[axis] for axis, value in planes])
    t = np.where(t > 0, t, np.inf)
    surface = np.argmin(t, 0)
    distance = np.take_along_axis(t, surface[None], 0)[0]
    facing = np.zeros_like(surface)
    for number, corners in enumerate(boxes, start=6):
        low, high = (np.asarray(corner, np.float32) - origin for corner in corners)
        to_low, to_high = low[:, None, None] * inverse, high[:, None, None] * inverse
        near, far = np.minimum(to_low, to_high), np.maximum(to_low, to_high)
        enter = np.maximum(np.maximum(near[0], near[1]), near[2])
        leave = np.minimum(np.minimum(far[0], far[1]), far[2])
        hit = (enter < leave) & (enter > 0) & (enter < distance)
        axis = np.where(near[0] == enter, 0, np.where(near[1] == enter, 1, 2))  # first largest
        distance = np.where(hit, enter, distance)
        surface = np.where(hit, number, surface)
        facing = np.where(hit, axis, facing)
    normals = np.array(
        [[0, 1, 0], [0, -1, 0], [0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, 0, 1]], np.float32
    )
    face = np.where(facing[..., None] == np.arange(3), -np.sign(rays), np.float32(0))
    normal = np.where((surface >= 6)[..., None], face, normals[np.minimum(surface, 5)])
    point = origin + distance[..., None] * rays
    return distance.astype(np.float32), point.astype(np.float32), normal, surface


def _irradiance(point: np.ndarray, normal: np.ndarray | None, lamps: list[_Lamp]) -> np.ndarray:
    """Light falling on points (`... x 3` RGB), inverse-square from each lamp, times the cosine
    to the surface `normal` (a person, with no normal, gets an average cosine)."""
    total = np.zeros(point.shape, np.float32)
    for lamp in lamps:
        towards = lamp.position - point
        distance2 = np.maximum(dot(towards, towards), 0.04)
        cosine = 0.6 if normal is None else np.maximum(dot(towards, normal), 0) / np.sqrt(distance2)
        total += (lamp.power * cosine / distance2)[..., None] * lamp.colour
    return total


def _glow(mount: Mount, height: int, width: int, depth: np.ndarray, lamp: _Lamp) -> np.ndarray:
    """A lamp as the camera sees it: a bulb that clips and a halo around it, hidden behind what
    is nearer. Returns emitted light per canvas pixel, `H x W x 3`."""
    (x, y), z = mount.project(lamp.position)
    if z < 0.3:
        return np.zeros((height, width, 3), np.float32)
    rows, cols = np.arange(height)[:, None] + 0.5 - y, np.arange(width)[None, :] + 0.5 - x
    radius = lamp.radius * mount.focal / z
    reach2 = (rows * rows + cols * cols) / np.float32(radius * radius)
    visible = depth > z - lamp.radius
    light = np.where(reach2 < 1, 400.0, 6.0 / (1 + reach2)) * visible
    return (light[..., None] * lamp.colour * lamp.power).astype(np.float32)


def draw_heading(action: str, rng: np.random.Generator) -> float:
    """Which way the actor faces, in radians from the camera's line of sight (0: their back to
    it): mostly across the room. One of the `GESTURES` is shown to the camera: an actor who drew
    a heading turned away faces the camera's half of the room instead, at the mirror angle."""
    heading = rng.uniform(-np.pi, np.pi)
    if rng.random() < 0.7:  # across the room rather than towards or away from the camera
        heading = np.sign(heading) * rng.uniform(np.radians(55), np.radians(125))
    if action in GESTURES and abs(heading) < np.pi / 2:
        heading = np.sign(heading) * (np.pi - abs(heading))
    return float(heading)


def build_scene(
    action: str,
    rng: np.random.Generator,
    frames: int,
    size: tuple[int, int],
    domain: Domain,
    fps: float = 24.0,
) -> Scene:
    """One clip's room, lights, camera and people, rendered to linear light per frame."""
    width, height = size
    pose, props = perform(action, rng, frames, fps)
    body = draw_body(rng, domain)
    fov = draw(rng, domain.fov)
    camera_height = draw(rng, domain.camera_height)

    # Where the actor stands: far enough to be seen whole, near enough to be seen at all.
    tangent = exact.tan(np.radians(fov) / 2) * height / width
    nearest = max(2.0, 1.3 * body.stature / (2 * tangent), camera_height * 0.9)
    farthest = max(nearest + 0.5, body.stature / (0.55 * 2 * tangent))
    distance = rng.uniform(nearest, farthest)
    heading = draw_heading(action, rng)
    walk = body.stature * float(pose["forward"][-1])
    direction = np.array([np.sin(heading), 0, np.cos(heading)])
    middle = np.array([rng.uniform(-1.0, 1.0), 0, distance])
    root = middle - direction * walk / 2
    path = np.abs(np.stack([root, root + direction * walk]))
    room = (
        max(rng.uniform(4.0, 9.0), 2 * path[:, 0].max() + 2.5),
        max(rng.uniform(2.5, 3.6), camera_height + 0.4),
        max(rng.uniform(5.0, 12.0), path[:, 2].max() + 1.5, distance + 3.5),
    )

    # The camera: on the front wall, looking at the actor (give or take), then shaking or panning.
    position = np.array([rng.uniform(-0.3, 0.3) * room[0], camera_height, 0.15])
    target = middle + [rng.uniform(-0.4, 0.4), body.stature * rng.uniform(0.35, 0.65), 0]
    first = aim(position, target, fov, width, (width / 2, height / 2))
    travel = first.project(root + direction * walk * np.linspace(0, 1, frames)[:, None])[0][:, 0]
    shift = offsets(rng, travel, width)
    margin = 3
    corner = shift.min(0) - margin
    canvas = (
        height + int(np.ptp(shift[:, 1])) + 2 * margin,
        width + int(np.ptp(shift[:, 0])) + 2 * margin,
    )
    mount = aim(position, target, fov, width, (width / 2 - corner[0], height / 2 - corner[1]))
    crops = shift - corner

    # Actors, as ARID's did, act with the hand the camera sees.
    right = np.array([np.cos(heading), 0.0, -np.sin(heading)])
    if (dot(right, position - middle) > 0) != (busier_side(pose) == "r"):
        pose, props = mirrored(pose, props)

    # The room: furniture, clutter, perhaps a table or sofa between the camera and the actor.
    actor = place(skeleton(pose, props, body), root, heading, pose, body.stature)
    boxes = _boxes(rng, room[0], room[2], near=distance + 1.0)
    if action in ("Sit", "Stand"):
        boxes.append(_seat(actor))
    if rng.random() < 0.3:
        across, deep = rng.uniform(0.6, 1.4), rng.uniform(0.4, 0.8)
        tall = body.stature * rng.uniform(0.35, 0.55)
        low = middle + [rng.uniform(-0.5, 0.5) - across / 2, 0, -rng.uniform(0.6, 1.0) - deep]
        boxes.append((low, low + [across, tall, deep]))
    depth, point, normal, surface = _cast(mount, *canvas, room, boxes)
    albedo = _surfaces(rng, domain, surface, point, len(boxes))

    # Lamps, some in view; a lit window in some rooms; the light's colour.
    light = pick(rng, domain.lights)
    lamps = _lamps(rng, domain, light, room, point, mount)
    lit = albedo * (_irradiance(point, normal, lamps) + np.float32(rng.uniform(0.01, 0.05)))
    glow = sum(_glow(mount, *canvas, depth, lamp) for lamp in lamps)
    lit += glow * np.float32(np.median(lit))
    if rng.random() < 0.4:
        lit = _window(rng, lit, point, surface, room)

    def crop(canvas: np.ndarray) -> np.ndarray:
        """Each frame's picture cut out of a canvas (slices: a fancy-index gather is slower)."""
        return np.stack([canvas[y : y + height, x : x + width] for x, y in crops])

    room_frames = crop(lit)
    if rng.random() < 0.2:
        room_frames += crop(albedo) * _headlights(rng, crop(point), crop(surface))
    room_depth = crop(depth)

    people = []
    if rng.random() < 0.25:  # a bystander, further back, idling
        other = draw_body(rng, domain)
        spot = np.array([rng.uniform(-0.4, 0.4) * room[0], 0, distance + rng.uniform(1.0, 3.0)])
        spot[2] = min(spot[2], room[2] - 0.5)
        still = idle(rng, frames)
        turned = rng.uniform(-np.pi, np.pi)
        segments = place(skeleton(still, [], other), spot, turned, still, other.stature)
        people.append(_person(segments, other, mount, crops, room_depth, lamps))
    people.append(_person(actor, body, mount, crops, room_depth, lamps))
    scene = Scene(room_frames.astype(np.float32), tuple(people), light)
    return scene.reversed() if action == "Stand" else scene


def _lamps(
    rng: np.random.Generator,
    domain: Domain,
    light: str,
    room: tuple[float, float, float],
    point: np.ndarray,
    mount: Mount,
) -> list[_Lamp]:
    """1-3 lamps, mostly of the scene's light colour (all of it under infrared), half of them in
    view: on the surface seen through a random pixel of the canvas's upper half."""
    lamps = []
    for _ in range(int(rng.integers(1, 4))):
        name = light if light == "infrared" or rng.random() < 0.7 else pick(rng, domain.lights)
        spot = rng.uniform([-0.5, 1.2, 0.5], [0.5, 0.95 * room[1], room[2] - 0.3])
        spot[0] *= room[0]
        if rng.random() < 0.5:
            row = int(rng.uniform(0.05, 0.5) * point.shape[0])
            col = int(rng.uniform(0.1, 0.9) * point.shape[1])
            spot = point[row, col] - 0.15 * (point[row, col] - mount.position)
        power, radius = float(rng.uniform(0.5, 3.0)), float(rng.uniform(0.05, 0.15))
        lamps.append(_Lamp(spot, np.array(LIGHTS[name], np.float32), power, radius))
    return lamps


def _person(
    segments: list[Segment],
    body: Body,
    mount: Mount,
    crops: np.ndarray,
    room_depth: np.ndarray,
    lamps: list[_Lamp],
) -> Person:
    """Someone placed in the room, rasterised and lit (by the lamps at their chest)."""
    layer = rasterise(segments, body, mount, crops, room_depth)
    chest = (segments[0].end + segments[1].end) / 2
    light = _irradiance(chest, None, lamps) + np.float32(0.02)
    return Person(body, layer, light.astype(np.float32))


def _seat(segments: list[Segment]) -> Box:
    """A seat under the pelvis where it is lowest: whoever sits down sits on something."""
    pelvis = (segments[0].start + segments[1].start) / 2
    x, y, z = pelvis[np.argmin(pelvis[:, 1])]
    top = max(y - 0.08, 0.25)
    return np.array([x - 0.2, 0.0, z - 0.2]), np.array([x + 0.2, top, z + 0.2])


def _surfaces(
    rng: np.random.Generator, domain: Domain, surface: np.ndarray, point: np.ndarray, boxes: int
) -> np.ndarray:
    """Albedo per canvas pixel: textured walls, floor and ceiling, plain-ish furniture. Each
    surface's pattern is worked out at its own pixels alone."""
    wall, floor = pick(rng, domain.walls), _FLOORS[int(rng.integers(len(_FLOORS)))]
    seen = [point[surface == number] for number in range(6 + boxes)]
    wall_colour = albedo(rng, rng.uniform(0.15, 0.7))
    paint = [
        (albedo(rng, rng.uniform(0.08, 0.45)), _texture(floor, seen[0][:, 0], seen[0][:, 2], rng)),
        (albedo(rng, rng.uniform(0.4, 0.8)), np.ones(len(seen[1]), np.float32)),
        (wall_colour, _texture(wall, seen[2][:, 0], seen[2][:, 1], rng)),
        (wall_colour, _texture(wall, seen[3][:, 2], seen[3][:, 1], rng)),
        (wall_colour, _texture(wall, seen[4][:, 2], seen[4][:, 1], rng)),
        (wall_colour, _texture(wall, seen[5][:, 0], seen[5][:, 1], rng)),
    ]
    for number in range(6, 6 + boxes):
        x, z = seen[number][:, 0], seen[number][:, 2]
        tint = albedo(rng, rng.uniform(0.03, 0.6))
        paint.append((tint, 1 + 0.06 * np.sin(rng.uniform(5, 20) * (x + z) + rng.uniform(0, 6))))
    result = np.zeros((*surface.shape, 3))
    for number, (tint, pattern) in enumerate(paint):
        result[surface == number] = tint * pattern[:, None]
    return result.astype(np.float32)


def _window(
    rng: np.random.Generator,
    lit: np.ndarray,
    point: np.ndarray,
    surface: np.ndarray,
    room: tuple[float, float, float],
) -> np.ndarray:
    """A lit window on the back wall: glowing from outside (streetlight, a neighbour's room), as
    bright as the lamps or brighter, so that it often clips."""
    centre = rng.uniform([-0.4, 1.2], [0.4, 2.0]) * [room[0], 1]
    half = rng.uniform([0.2, 0.25], [0.6, 0.5])
    inside = (
        (surface == 2)
        & (np.abs(point[..., 0] - centre[0]) < half[0])
        & (np.abs(point[..., 1] - centre[1]) < half[1])
    )
    bars = (np.abs(point[..., 0] - centre[0]) < 0.03) | (np.abs(point[..., 1] - centre[1]) < 0.03)
    glow = np.float32(np.median(lit) * rng.uniform(3, 30))
    colour = exact.exp(rng.normal(0, 0.25, 3)).astype(np.float32)
    return np.where((inside & ~bars)[..., None], glow * colour, lit)


def _headlights(rng: np.random.Generator, point: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """Headlights of a passing car through a window: a bright patch sweeping along the walls.
    Returns the extra light per frame and pixel (`F x H x W x 3`) given the frames' points and
    surfaces (`F x H x W x 3`, `F x H x W`)."""
    start, stop = rng.uniform(-6, 6, 2)
    height = rng.uniform(0.5, 2.0)
    power = np.float32(rng.uniform(0.3, 1.5))
    along = np.where(surface == 2, point[..., 0], point[..., 2])
    walls = (surface >= 2) & (surface <= 4)
    centres = np.linspace(start, stop, len(point), dtype=np.float32)
    u = along - centres[:, None, None]
    v = point[..., 1] - np.float32(height)
    patch = np.zeros(walls.shape, np.float32)  # the exp, the costly part, on the walls alone
    patch[walls] = power * exact.exp(-(u * u + v * v)[walls] / np.float32(0.5)).astype(np.float32)
    return patch[..., None] * np.array([1.0, 0.95, 0.85], np.float32)


def render_scene(
    action: str,
    rng: np.random.Generator,
    frames: int,
    size: tuple[int, int],
    domain: Domain | None = None,
) -> np.ndarray:
    """The lit scene before the camera, float32 linear RGB `frames x H x W x 3`.

    Stand is Sit played backwards, exactly: the same draws, frames reversed (`build_scene`).
    """
    return build_scene(action, rng, frames, size, domain or DOMAINS["train"]).frames()
