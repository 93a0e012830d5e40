"""model.focus: zooming a clip onto where it changes, and ClipSpec applying it."""

import pytest
import torch
from pydantic import ValidationError

from model.clip import ClipSpec
from model.focus import change_boxes, shrink, zoom_into


def _dark_room(seed: int = 0) -> torch.Tensor:
    """A noisy dark 56 x 56 room, 8 frames, with a lamp flickering by a tenth in one corner."""
    generator = torch.Generator().manual_seed(seed)
    frames = 10 + 2 * torch.randn(1, 8, 56, 56, 3, generator=generator)
    for t in range(8):
        frames[0, t, :8, 48:] = 230 * (1 + 0.1 * (-1) ** t)  # the lamp
    return frames


def _with_person(frames: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """A person `size` pixels tall waving an arm, at (top, left)."""
    frames = frames.clone()
    frames[0, :, top : top + size, left : left + size // 3] = 40
    for t in range(8):
        arm = top + (t % 4) * size // 8
        frames[0, t, arm : arm + 2, left + size // 3 : left + size // 2 + 2] = 40
    return frames.round().clamp(0, 255).to(torch.uint8)


def test_a_small_person_far_away_fills_the_zoomed_clip():
    """The box holds the small person and not the flickering lamp, and is zoomed to its limit."""
    frames = _with_person(_dark_room(), top=38, left=6, size=12)
    centre_x, centre_y, side = change_boxes(frames, zoom=2.5)[0].tolist()
    assert side == pytest.approx(56 / 2.5)
    assert 6 <= centre_x <= 6 + 12 and 38 <= centre_y <= 56 - side / 2
    zoomed = zoom_into(frames, change_boxes(frames, zoom=2.5), 56)
    assert zoomed.shape == frames.shape and zoomed.dtype == torch.uint8
    lit_before = frames[0, 0].float().mean(-1) > 30
    lit_before[:8, 48:] = False  # the lamp
    lit_after = zoomed[0, 0].float().mean(-1) > 30
    assert lit_after.sum() >= 4 * lit_before.sum()  # 2.5 x 2.5 the pixels, less the blur


def test_a_clip_that_does_not_change_is_left_whole():
    still = _dark_room()[:, :1].expand(1, 8, 56, 56, 3).round().to(torch.uint8)
    assert torch.equal(ClipSpec(focus=2.5).focused(still), still)
    assert change_boxes(still, zoom=2.5)[0].tolist() == [28.0, 28.0, 56.0]


def test_a_near_person_is_not_cut():
    """A person who fills the frame keeps the whole frame: the box is never larger than it."""
    frames = _with_person(_dark_room(), top=4, left=4, size=48)
    side = change_boxes(frames, zoom=2.5)[0, 2]
    assert 40 <= side <= 56


def test_clip_spec_focuses_before_normalising_and_only_when_asked():
    frames = _with_person(_dark_room(1), top=38, left=6, size=12)
    plain, focused = ClipSpec(normalize="per_clip"), ClipSpec(normalize="per_clip", focus=2.5)
    assert torch.equal(
        plain.to_input(frames), ClipSpec(normalize="per_clip", focus=1).to_input(frames)
    )
    zoomed = zoom_into(frames, change_boxes(frames, 2.5), 56)
    torch.testing.assert_close(focused.to_input(frames), plain.to_input(zoomed))
    assert not torch.equal(focused.to_input(frames), plain.to_input(frames))


def test_a_zoom_out_of_range_is_refused():
    for bad in (-1.0, 9.0, float("nan"), float("inf")):
        with pytest.raises(ValidationError):
            ClipSpec(focus=bad)


def test_detail_finds_the_square_on_the_scaled_down_frames_and_cuts_it_from_the_sharp_ones():
    """At `detail: 2` the frames come at twice the crop: the square is the one the crop-size
    frames give, and the far person's fine texture, which scaling down first averages away,
    reaches the network input."""
    small = _with_person(_dark_room(2), top=38, left=6, size=12)
    sharp = small.repeat_interleave(2, 2).repeat_interleave(2, 3)
    sharp[0, :, 76:100, 12:20] = torch.tensor([0, 80], dtype=torch.uint8).repeat(12)[:, None, None]
    plain, detailed = ClipSpec(focus=2.5), ClipSpec(focus=2.5, detail=2)
    torch.testing.assert_close(detailed.focus_boxes(sharp), 2 * plain.focus_boxes(small))
    assert torch.equal(ClipSpec(detail=2).focused(sharp)[:, :, :38], small[:, :, :38])

    def texture(frames: torch.Tensor) -> float:
        body = frames[0, :, 20:40, 4:16].float()  # the body, zoomed 2.5x from the bottom left
        return (body[:, 1:] - body[:, :-1]).abs().mean().item()

    sharp_zoomed, blurred_zoomed = detailed.focused(sharp), plain.focused(shrink(sharp, 2))
    assert sharp_zoomed.shape == blurred_zoomed.shape == (1, 8, 56, 56, 3)
    assert texture(sharp_zoomed) > 3 * texture(blurred_zoomed)
