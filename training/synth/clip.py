"""One clip end to end: the scene, the camera's exposure, the legibility floor, the sensor.

A clip's generator is split into three streams (scene, camera, sensor noise), so that the noise-free
picture of any clip can be rendered again from its seed alone (`lumos data stats` does, to know
which pixels are static and where the figure is) without drawing the noise.
"""

from dataclasses import dataclass

import numpy as np

from training.synth.camera import LIGHTS, exposure_profile, shutter, white_balance
from training.synth.domains import DOMAINS, Domain, pick
from training.synth.scene import build_scene
from training.synth.sensor import LUMA, Sensor, capture, draw_sensor, exposure, tone
from training.synth.stats import LEGIBILITY_FLOOR, legibility

LEGIBILITY_STRIDE = 4
REDRAWS = ((None, 1.0), (True, 2.0), (False, 1.0), (True, 4.0))
"""The redraws of an illegible clip, in order: clothes lighter (True), darker (False) or away from
the surround's grey level (None), and the factor on the light falling on the actor."""
SCENES = 10
"""New scenes drawn at most for an illegible clip; the last is kept whatever its legibility (the
statistics report it), so that no frame size can make the generator loop for ever."""


@dataclass(frozen=True)
class Settings:
    """The camera's settings for one clip."""

    sensor: Sensor
    gain: np.ndarray
    """Per-frame gain: auto-exposure steps and flicker."""
    blur: float
    balance: np.ndarray
    mono: bool


def draw_settings(
    rng: np.random.Generator, frames: int, fps: float, domain: Domain, light: str
) -> Settings:
    """A camera for a clip under `light`; an infrared-lit scene is filmed in greyscale."""
    return Settings(
        sensor=draw_sensor(rng, domain),
        gain=exposure_profile(rng, frames, fps),
        blur=float(rng.uniform(0.0, 0.5)),
        balance=white_balance(rng, light),
        mono=light == "infrared",
    )


def expose(frames: np.ndarray, settings: Settings) -> np.ndarray:
    """Noise-free exposures `F x H x W x C` (1 = saturation; C = 1 in greyscale) of linear frames:
    motion blur, white balance, the per-frame gain, and the exposure that meets the target."""
    light = shutter(frames, settings.blur)
    for channel, balance in enumerate(settings.balance):  # faster than a broadcast over 3
        light[..., channel] *= balance * settings.gain[:, None, None]
    if settings.mono:
        light = light[..., 0:1] * LUMA[0] + light[..., 1:2] * LUMA[1] + light[..., 2:3] * LUMA[2]
    light *= exposure(light, settings.sensor)
    return light


def _rgb(frames: np.ndarray) -> np.ndarray:
    return np.repeat(frames, 3, -1) if frames.shape[-1] == 1 else frames


def film(
    frames: np.ndarray,
    rng: np.random.Generator,
    domain: Domain | None = None,
    light: str | None = None,
    fps: float = 24.0,
) -> np.ndarray:
    """What a night camera records of linear frames `F x H x W x 3`: uint8, same shape. Its
    settings are drawn from `rng` (the light's colour too, unless given), then its noise."""
    domain = domain or DOMAINS["train"]
    light = light or pick(rng, tuple(name for name in domain.lights if name != "infrared"))
    if light not in LIGHTS:
        raise ValueError(f"unknown light {light!r}: expected one of {', '.join(LIGHTS)}")
    settings = draw_settings(rng, len(frames), fps, domain, light)
    return _rgb(capture(expose(frames, settings), settings.sensor, rng))


@dataclass(frozen=True)
class Shot:
    """A rendered clip: the video (None when rendered without noise), its noise-free exposures,
    the actor's coverage per pixel, its legibility and how many redraws that took."""

    video: np.ndarray | None
    exposures: np.ndarray
    black: float
    figure: np.ndarray
    contrast: float
    redraws: int

    def clean(self) -> np.ndarray:
        """The noise-free clip in grey levels (float), `F x H x W x 3`."""
        return np.clip(_rgb(tone(self.exposures, self.black)), 0, 255)


def shoot(
    action: str,
    rng: np.random.Generator,
    frames: int,
    size: tuple[int, int],
    domain: Domain,
    fps: float = 24.0,
    noisy: bool = True,
) -> Shot:
    """Render one clip. One under the legibility floor (measured on every `LEGIBILITY_STRIDE`th
    frame) is redrawn from the scene's stream, so deterministically: new clothes as `REDRAWS`
    says, then, if none of those is legible, a new scene altogether (up to `SCENES`)."""
    scene_rng, camera_rng, noise_rng = rng.spawn(3)
    redraws, brighter = 0, True
    while True:
        attempt = redraws % (len(REDRAWS) + 1)
        if attempt == 0:
            scene = build_scene(action, scene_rng, frames, size, domain, fps)
            settings = draw_settings(camera_rng, frames, fps, domain, scene.light)
        else:
            lighter, light = REDRAWS[attempt - 1]
            scene = scene.recoloured(scene_rng, brighter if lighter is None else lighter, light)
        x = expose(scene.frames(), settings)
        coverage = scene.actor.layer.coverage
        sample = _rgb(tone(x[::LEGIBILITY_STRIDE], settings.sensor.black))
        contrast, brighter = legibility(sample, coverage[::LEGIBILITY_STRIDE])
        if contrast >= LEGIBILITY_FLOOR or redraws == SCENES * (len(REDRAWS) + 1) - 1:
            break
        redraws += 1
    video = _rgb(capture(x, settings.sensor, noise_rng)) if noisy else None
    return Shot(video, x, settings.sensor.black, coverage, contrast, redraws)


def render_clip(
    action: str,
    rng: np.random.Generator,
    frames: int,
    size: tuple[int, int],
    domain: Domain | None = None,
) -> np.ndarray:
    """One dark clip as the camera records it, uint8 `frames x H x W x 3`."""
    video = shoot(action, rng, frames, size, domain or DOMAINS["train"]).video
    assert video is not None
    return video
