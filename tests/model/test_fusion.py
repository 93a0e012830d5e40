"""Dynamic Feature Fusion and the static baselines."""

import pytest
import torch

from model.fusion import DynamicFeatureFusion, build_fusion
from model.manifest import FUSIONS


def maps(batch: int = 2, channels: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(batch, channels, 4, 3, 3), torch.randn(batch, channels, 4, 3, 3)


@pytest.mark.parametrize("training", [True, False])
def test_dff_weights_sum_to_one_at_every_position(training):
    dff = DynamicFeatureFusion(16).train(training)
    f_dark, f_ret = maps()
    w = dff.weights(f_dark, f_ret)
    assert w.shape == (2, 2, 4, 3, 3)
    assert (w > 0).all()
    torch.testing.assert_close(w.sum(dim=1), torch.ones(2, 4, 3, 3))
    # The weights are local: they differ between positions of one clip.
    assert w[:, 0].flatten(1).std(dim=1).min() > 0


@pytest.mark.parametrize("training", [True, False])
def test_dff_of_identical_streams_is_the_input(training):
    dff = DynamicFeatureFusion(16).train(training)
    f, _ = maps()
    torch.testing.assert_close(dff(f, f.clone()), f)


def test_dff_output_is_the_weighted_sum_of_the_streams():
    dff = DynamicFeatureFusion(16).eval()
    f_dark, f_ret = maps()
    w = dff.weights(f_dark, f_ret)
    torch.testing.assert_close(dff(f_dark, f_ret), w[:, :1] * f_dark + w[:, 1:] * f_ret)


def test_dff_reduction_sets_the_bottleneck_width():
    assert DynamicFeatureFusion(16, reduction=4).local_context[0].out_channels == 4
    assert DynamicFeatureFusion(16, reduction=2).weighting[0].out_channels == 8


def test_static_baselines():
    f_dark, f_ret = maps()
    torch.testing.assert_close(build_fusion("sum", 16)(f_dark, f_ret), f_dark + f_ret)
    torch.testing.assert_close(build_fusion("mean", 16)(f_dark, f_ret), (f_dark + f_ret) / 2)
    assert build_fusion("single", 16)(f_dark, f_ret) is f_dark
    concat = build_fusion("concat", 16)
    assert concat(f_dark, f_ret).shape == f_dark.shape
    assert concat.conv.in_channels == 32


def test_every_named_fusion_builds_and_others_are_rejected():
    f_dark, f_ret = maps()
    for kind in FUSIONS:
        assert build_fusion(kind, 16)(f_dark, f_ret).shape == f_dark.shape
    with pytest.raises(ValueError, match="unknown fusion 'max'"):
        build_fusion("max", 16)
