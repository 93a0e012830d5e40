"""Luma statistics, the noise estimate, and the darkness gate."""

import numpy as np
import pytest

from service.illumination import Illumination, gate, measure


def test_luma_of_a_known_clip() -> None:
    frames = np.zeros((4, 20, 20, 3), np.uint8)
    frames[..., 0] = 100  # pure red: luma = 0.299 * 100
    frames[:, :, :10, :] = 0  # left half black
    stats = measure(frames)
    assert stats.luma_mean == pytest.approx(0.299 * 100 / 2, abs=0.01)
    assert stats.luma_p5 == 0 and stats.luma_p95 == pytest.approx(29.9, abs=0.01)


@pytest.mark.parametrize("sigma", [2.0, 6.0])
def test_noise_estimate_tracks_the_true_sigma_and_ignores_smooth_structure(sigma: float) -> None:
    rng = np.random.default_rng(0)
    ramp = np.linspace(5, 60, 64)[None, None, :, None]  # smooth horizontal ramp
    clean = np.broadcast_to(ramp, (8, 64, 64, 3))
    noise = rng.normal(0, sigma, (8, 64, 64, 1))  # same in R, G, B: luma noise = sigma
    frames = np.clip(clean + noise + 20, 0, 255).astype(np.uint8)
    assert measure(frames).noise_sigma == pytest.approx(sigma, rel=0.15)


def test_a_noiseless_ramp_has_no_noise() -> None:
    ramp = np.linspace(0, 200, 32).astype(np.uint8)
    frames = np.broadcast_to(ramp[None, None, :, None], (3, 32, 32, 3)).copy()
    assert measure(frames).noise_sigma < 0.3


def test_gate_reasons_and_off_switch() -> None:
    dim = Illumination(luma_mean=4.0, luma_p5=1.0, luma_p95=9.0, noise_sigma=1.0)
    flat = Illumination(luma_mean=30.0, luma_p5=29.5, luma_p95=30.5, noise_sigma=0.1)
    assert gate(dim, min_luma=5.0, min_range=0.0) == "too_dark"
    assert gate(dim, min_luma=3.0, min_range=0.0) is None
    assert gate(flat, min_luma=5.0, min_range=2.0) == "no_signal"
    assert gate(dim, min_luma=0.0, min_range=0.0) is None
    assert gate(flat, min_luma=0.0, min_range=0.0) is None
