"""MSRCR and gamma enhancement of dark clips."""

import pytest
import torch
import torch.nn.functional as F

from model.enhance import gamma_correct, gaussian_blur, msrcr, to_unit


def dark_clip(batch: int = 2, frames: int = 4, size: int = 48) -> torch.Tensor:
    """uint8 `B x 3 x T x H x W` with smooth structure at a mean level of about 10 / 255."""
    g = torch.Generator().manual_seed(0)
    scene = torch.rand(batch, 3, frames, size // 8, size // 8, generator=g)
    scene = F.interpolate(scene, size=(frames, size, size), mode="trilinear")
    return (scene * 20).to(torch.uint8)


def test_msrcr_brightens_a_dark_clip_and_keeps_the_unit_range():
    clip = dark_clip()
    out = msrcr(clip)
    assert out.dtype == torch.float32 and out.shape == clip.shape
    assert out.min() >= 0 and out.max() <= 1
    assert out.mean() > 0.3 > 5 * to_unit(clip).mean()
    # 1% / 99% clipping: each channel of each clip spans the full range.
    assert torch.allclose(out.amin(dim=(2, 3, 4)), torch.zeros(2, 3))
    assert torch.allclose(out.amax(dim=(2, 3, 4)), torch.ones(2, 3))


def test_msrcr_accepts_uint8_and_both_float_scales():
    clip = dark_clip()
    expected = msrcr(clip)
    torch.testing.assert_close(msrcr(clip.float()), expected)
    torch.testing.assert_close(msrcr(clip.float() / 255), expected, rtol=1e-4, atol=1e-4)


def test_gamma_correction():
    clip = torch.full((1, 3, 2, 4, 4), 64, dtype=torch.uint8)
    torch.testing.assert_close(gamma_correct(clip, gamma=2.0), (to_unit(clip)).sqrt())
    assert gamma_correct(clip).mean() > to_unit(clip).mean()


def test_to_unit_decides_the_float_scale_per_clip():
    clip = torch.stack([torch.full((3, 2, 2), 0.5), torch.full((3, 2, 2), 127.5)])
    torch.testing.assert_close(to_unit(clip), torch.full_like(clip, 0.5))


def exact_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Zero-padded separable convolution divided by the blurred ones image (reference)."""
    radius = max(images.shape[-2:])
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(x**2) / (2 * sigma**2))

    def blur(z: torch.Tensor) -> torch.Tensor:
        z = F.conv2d(z, k.view(1, 1, 1, -1), padding=(0, radius))
        return F.conv2d(z, k.view(1, 1, -1, 1), padding=(radius, 0))

    images = images.double()
    return (blur(images) / blur(torch.ones_like(images))).float()


@pytest.mark.parametrize("sigma", [2.0, 15.0, 80.0])
def test_gaussian_blur_is_the_border_normalised_convolution(sigma):
    images = torch.rand(3, 1, 112, 96)
    torch.testing.assert_close(gaussian_blur(images, sigma), exact_blur(images, sigma))


@pytest.mark.parametrize("sigma", [15.0, 250.0])
def test_gaussian_blur_keeps_constants_at_the_borders(sigma):
    images = torch.full((2, 1, 40, 56), 3.0)
    torch.testing.assert_close(gaussian_blur(images, sigma), images)
