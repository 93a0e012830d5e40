"""What the sensor and the camera's processing make of very little light: a photon-transfer noise
model, a 14-bit converter, a tone curve, 8 bits.

The noise is what lets a model tell night footage from a clean rendering, so it must survive the
H.264 encode; x264 smooths away noise much under its quantiser step, so it is applied at the level
real low-light CCTV shows (about 2-3 grey levels per channel at mean luma 10 before encoding) and
the encoder is told to keep grain (`benchmark.ENCODER`). In electrons, per pixel and frame:

    signal  e = x * full_scale                 (x: exposure, 1 = saturation)
    e'      = e * (1 + PRNU) + DSNU             (fixed pattern: constant over the clip)
            + sqrt(e) * N(0, 1)                 (shot noise, Poisson in its Gaussian form)
            + read * N(0, 1) + row * N(0, 1)    (read noise per pixel; offset per row and frame)

so the temporal variance in converter units follows the photon-transfer curve
var = e / full_scale^2 + (read^2 + row^2) / full_scale^2. The colour channels' noise is partly
shared, as demosaicing makes it. Then the converter (14 bits, a pedestal so that noise below black
is not cut), and the tone curve: the sRGB curve (linear toe of slope 12.92, then a 1/2.4 power) on
a lifted black level. Dark pixels sit on the toe, where each electron of noise counts the most.
"""

from dataclasses import dataclass

import numpy as np

from training.synth import exact
from training.synth.domains import Domain, draw

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_BITS = 16383
_PEDESTAL = 512
"""Converter codes: 0 is `-_PEDESTAL / (_BITS - _PEDESTAL)` of full scale, the top is 1."""


@dataclass(frozen=True)
class Sensor:
    """One clip's sensor and processing settings."""

    full_scale: float
    """Electrons at saturation at this gain: a dark scene needs more gain, hence fewer electrons."""
    read: float
    row: float
    dsnu: float
    """Fixed offset per pixel, electrons (standard deviation)."""
    prnu: float
    """Fixed gain error per pixel (standard deviation, a fraction)."""
    shared: float
    """Share of the noise variance common to the three channels."""
    black: float
    """Grey level of zero light."""
    target: float
    """The clip's mean luma (grey levels)."""


def draw_sensor(rng: np.random.Generator, domain: Domain) -> Sensor:
    """A sensor: noise from the domain's ranges; the target luma log-uniform over 3-40 grey
    levels, so most clips are dark and a few are dim rather than dark."""
    target = float(exact.exp(rng.uniform(exact.log(3.0), exact.log(40.0))))
    return Sensor(
        full_scale=float(exact.exp(rng.uniform(exact.log(10000), exact.log(22000)))),
        read=draw(rng, domain.read_noise),
        row=draw(rng, domain.row_noise),
        dsnu=float(rng.uniform(0.3, 1.5)),
        prnu=float(rng.uniform(0.005, 0.02)),
        shared=float(rng.uniform(0.4, 0.8)),
        black=float(rng.uniform(1.0, min(6.0, 0.6 * target))),
        target=target,
    )


def tone(x: np.ndarray, black: float) -> np.ndarray:
    """Grey levels (float) of exposures `x` (1 = saturation): the sRGB curve on a black level; the
    linear toe carries on below 0, so noise around black is kept (until 8 bits clip it)."""
    x = np.asarray(x, dtype=np.float32)
    curve = np.float32(12.92) * x
    knee = ~(x < np.float32(0.0031308))  # the power, the costly part, only where it is used
    root = exact.power(x[knee], 1 / 2.4).astype(np.float32)
    curve[knee] = np.float32(1.055) * root - np.float32(0.055)
    return np.float32(black) + np.float32(255 - black) * curve


def exposure(linear: np.ndarray, sensor: Sensor) -> np.float32:
    """The scale from scene light to exposure that gives the clip its target mean luma, found by
    bisection (in log scale) on a sparse sample of the noise-free clip. Like a camera's metering,
    it gives highlights little weight (each sample counts at most 4 times the target), so that a
    lamp or a lit window in view does not plunge the rest of the picture into black."""
    sample = linear[::4, ::8, ::8].astype(np.float32)
    ceiling = min(255.0, 4 * sensor.target)
    low, high = -14.0, 14.0
    for _ in range(20):
        middle = (low + high) / 2
        levels = np.clip(tone(sample * np.float32(exact.exp(middle)), sensor.black), 0, ceiling)
        luma = float((levels.mean(axis=(0, 1, 2)) * LUMA).sum())
        low, high = (middle, high) if luma < sensor.target else (low, middle)
    return np.float32(exact.exp((low + high) / 2))


def capture(x: np.ndarray, sensor: Sensor, rng: np.random.Generator) -> np.ndarray:
    """uint8 frames of exposures `x` (`F x H x W x C`, C = 3 or 1) through the noise model, the
    converter and the tone curve."""
    frames, height, width, channels = x.shape
    electrons = x * np.float32(sensor.full_scale)
    fixed_gain = 1 + np.float32(sensor.prnu) * rng.standard_normal(x.shape[1:], dtype=np.float32)
    fixed_offset = np.float32(sensor.dsnu) * rng.standard_normal(x.shape[1:], dtype=np.float32)
    mix = rng.standard_normal(x.shape, dtype=np.float32)
    mix *= np.float32(np.sqrt(1 - sensor.shared))
    shared = rng.standard_normal((frames, height, width, 1), dtype=np.float32)
    mix += np.float32(np.sqrt(sensor.shared)) * shared
    # In place where it can be: the clip is the largest array the generator makes.
    noisy = np.maximum(electrons, 0)
    noisy += np.float32(sensor.read**2)
    np.sqrt(noisy, out=noisy)
    noisy *= mix
    noisy += np.float32(sensor.row) * rng.standard_normal((frames, height, 1, 1), np.float32)
    electrons *= fixed_gain
    electrons += fixed_offset
    noisy += electrons
    noisy *= np.float32((_BITS - _PEDESTAL) / sensor.full_scale)
    np.rint(noisy, out=noisy)
    noisy += _PEDESTAL
    codes = np.clip(noisy, 0, _BITS, out=noisy).astype(np.uint16)
    levels = (np.arange(_BITS + 1, dtype=np.float32) - _PEDESTAL) / np.float32(_BITS - _PEDESTAL)
    table = np.clip(np.rint(tone(levels, sensor.black)), 0, 255).astype(np.uint8)
    return table[codes]
