"""ClipSpec: the one conversion from decoded frames to network input."""

import pytest
import torch
from pydantic import ValidationError

from model.clip import KINETICS_MEAN, KINETICS_STD, ClipSpec


def test_paper_defaults():
    spec = ClipSpec()
    assert (spec.frames, spec.crop, spec.resize) == (64, 112, (170, 128))
    assert (spec.mean, spec.std) == (KINETICS_MEAN, KINETICS_STD)


def test_mean_std_layout_and_values():
    frames = torch.zeros(2, 4, 8, 8, 3, dtype=torch.uint8)
    frames[1, 2, 3, 5] = torch.tensor([255, 0, 51], dtype=torch.uint8)
    x = ClipSpec(frames=4, crop=8).to_input(frames)
    assert x.shape == (2, 3, 4, 8, 8) and x.dtype == torch.float32
    mean, std = torch.tensor(KINETICS_MEAN), torch.tensor(KINETICS_STD)
    torch.testing.assert_close(x[1, :, 2, 3, 5], (torch.tensor([1.0, 0.0, 0.2]) - mean) / std)
    torch.testing.assert_close(x[0, :, 0, 0, 0], -mean / std)


def test_per_clip_standardisation():
    spec = ClipSpec(normalize="per_clip")
    frames = torch.randint(0, 30, (3, 4, 16, 16, 3), dtype=torch.uint8)
    frames[1] += 100  # a brighter clip must come out the same way
    x = spec.to_input(frames)
    torch.testing.assert_close(x.mean(dim=(1, 2, 3, 4)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(1, 2, 3, 4)), torch.ones(3), atol=1e-4, rtol=0)
    black = spec.to_input(torch.zeros(1, 2, 4, 4, 3, dtype=torch.uint8))
    assert torch.equal(black, torch.zeros_like(black))


@pytest.mark.parametrize(
    "frames",
    [
        torch.zeros(1, 4, 8, 8, 3),
        torch.zeros(1, 3, 4, 8, 8, dtype=torch.uint8),
        torch.zeros(4, 8, 8, 3, dtype=torch.uint8),
    ],
)
def test_rejects_wrong_dtype_or_layout(frames):
    with pytest.raises(ValueError, match="B x T x H x W x 3"):
        ClipSpec().to_input(frames)


def test_rejects_unknown_normalisation_and_fields():
    with pytest.raises(ValidationError):
        ClipSpec(normalize="minmax")
    with pytest.raises(ValidationError):
        ClipSpec(stride=2)


def test_motion_adds_what_changes_and_nothing_for_a_still_clip():
    """A person crossing a bright, still room: the motion term marks the pixels the person
    passes through, leaves the room alone, and a clip that does not change gets nothing added."""
    frames = torch.full((1, 4, 16, 16, 3), 12, dtype=torch.uint8)
    frames[:, :, :4, :4] = 250  # a lamp that never moves
    for t in range(4):
        frames[0, t, 8:12, 2 + 3 * t : 5 + 3 * t] = 40  # the person steps right
    still, moving = ClipSpec(normalize="per_clip"), ClipSpec(normalize="per_clip", motion=2.0)
    added = moving.to_input(frames) - still.to_input(frames)
    passed = torch.zeros(16, 16, dtype=torch.bool)
    passed[8:12, 2:14] = True
    assert added[..., passed].abs().amax() > 1.0
    assert torch.allclose(added[..., ~passed], added[..., ~passed][..., :1])  # the room: one offset
    assert torch.equal(added[:, :, 0], added[:, :, 0, :1, :1].expand_as(added[:, :, 0]))
    constant = frames[:, :1].expand(1, 4, 16, 16, 3).contiguous()
    assert torch.equal(moving.to_input(constant), still.to_input(constant))
    with pytest.raises(ValidationError):
        ClipSpec(motion=-1.0)
