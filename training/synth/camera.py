"""The camera as mounted and as it exposes: where it hangs and looks, how it projects the room and
the people in it (a pinhole), how it shakes or pans, how its auto-exposure and the mains flicker
change the gain from frame to frame, how long its shutter stays open (motion blur), and the colour
of the light it sees.

World coordinates are metres: x to the right of the room's front, y up from the floor, z into the
room. Products of vectors are spelled out as sums of three terms, never BLAS matrix products,
whose summation order may change with the machine and flip a rounding downstream.
"""

from dataclasses import dataclass

import numpy as np

from training.synth import exact

LIGHTS: dict[str, tuple[float, float, float]] = {
    "sodium": (1.0, 0.55, 0.18),
    "tungsten": (1.0, 0.72, 0.45),
    "led": (0.78, 0.9, 1.0),
    "infrared": (1.0, 1.0, 1.0),
    "fluorescent": (0.72, 1.0, 0.78),
    "magenta": (1.0, 0.62, 0.95),
}
"""Light colours (linear RGB, before the camera's partial white balance); "infrared" is the night
mode of a CCTV camera: an IR lamp and a greyscale picture."""


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The dot product over the last axis (length 3), as an explicit sum: see the module's note."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.sqrt(dot(vector, vector))


@dataclass(frozen=True)
class Mount:
    """A pinhole camera: its position, its axes (right, up, forward: unit vectors) and its focal
    length and principal point in pixels of the canvas it renders to."""

    position: np.ndarray
    right: np.ndarray
    up: np.ndarray
    forward: np.ndarray
    focal: float
    centre: tuple[float, float]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canvas pixels `... x 2` (x, y) and depths (metres along the view axis) of world points
        `... x 3`."""
        relative = points - self.position
        depth = np.maximum(dot(relative, self.forward), 0.05)
        x = self.centre[0] + self.focal * dot(relative, self.right) / depth
        y = self.centre[1] - self.focal * dot(relative, self.up) / depth
        return np.stack([x, y], -1), depth

    def rays(self, height: int, width: int) -> np.ndarray:
        """The ray through each canvas pixel, `height x width x 3`, scaled so that its step along
        the view axis is 1: a ray parameter is then the depth."""
        u = (np.arange(width, dtype=np.float32) + 0.5 - self.centre[0]) / self.focal
        v = (np.arange(height, dtype=np.float32) + 0.5 - self.centre[1]) / self.focal
        return (
            self.forward
            + u[None, :, None] * self.right.astype(np.float32)
            - v[:, None, None] * self.up.astype(np.float32)
        ).astype(np.float32)


def aim(
    position: np.ndarray, target: np.ndarray, fov: float, width: int, centre: tuple[float, float]
) -> Mount:
    """A level camera (no roll) at `position` looking at `target`, `fov` degrees wide over
    `width` pixels."""
    forward = _unit(target - position)
    right = _unit(np.cross(np.array([0.0, 1.0, 0.0]), forward))
    up = np.cross(forward, right)
    focal = width / 2 / exact.tan(np.radians(fov) / 2)
    return Mount(position, right, up, forward, float(focal), centre)


def offsets(rng: np.random.Generator, travel: np.ndarray, width: int) -> np.ndarray:
    """Per-frame integer picture offsets `F x 2` (x, y) on the canvas: a shaky mount's random walk
    of up to ~2 pixels in half the clips, and a pan that keeps a person who would otherwise cross
    more than 40% of the picture in view (`travel`: their x in canvas pixels)."""
    extent = float(np.ptp(travel))
    follow = max(0.0, 1 - 0.4 * width / extent) if extent > 0 else 0.0
    shaky = rng.random() < 0.5
    shake = rng.uniform(0.5, 2.0) * np.cumsum(rng.normal(size=(len(travel), 2)), axis=0)
    pan = np.stack([follow * (travel - travel[0]), np.zeros_like(travel)], -1)
    return np.round(pan + shaky * shake / np.sqrt(len(travel))).astype(int)


def exposure_profile(rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """Per-frame gain `F` against the clip's exposure: an auto-exposure step (the camera reacting
    to a change of light) in some clips, and mains flicker in some (100 Hz lamp flicker sampled at
    `fps` aliases to a slow beat)."""
    gain = np.ones(frames, dtype=np.float32)
    if rng.random() < 0.3:
        step = rng.uniform(0.45, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 2.2)
        start = rng.uniform(0.25, 0.75) * frames
        gain *= 1 + (step - 1) * np.clip((np.arange(frames) - start) / 4, 0, 1)
    if rng.random() < 0.25:
        beat = abs(100 - fps * round(100 / fps)) or 1.0
        phase = 2 * np.pi * beat * np.arange(frames) / fps + rng.uniform(0, 2 * np.pi)
        gain *= 1 + rng.uniform(0.04, 0.15) * np.sin(phase).astype(np.float32)
    return gain


def shutter(frames: np.ndarray, weight: float) -> np.ndarray:
    """Exposure motion blur: each frame averaged with its neighbours, weighted by how long the
    shutter stays open (night cameras expose for most of the frame time). The kernel is symmetric,
    so a clip played backwards is blurred the same."""
    weight = np.float32(weight)
    blurred = np.empty_like(frames)  # the previous frame plus the next, without a copy of each
    blurred[0], blurred[1:] = frames[0], frames[:-1]
    blurred[:-1] += frames[1:]
    blurred[-1] += frames[-1]
    blurred *= weight
    blurred += frames
    blurred *= 1 / (1 + 2 * weight)
    return blurred


def white_balance(rng: np.random.Generator, light: str) -> np.ndarray:
    """Channel gains of a camera that corrects its light's colour only partly, leaving a cast."""
    colour = np.array(LIGHTS[light], dtype=np.float32)
    return exact.power(colour, -rng.uniform(0.0, 0.7)).astype(np.float32)
