"""The paired bootstrap interval of the ablation table, on inputs whose answer is known."""

import numpy as np
import pytest

from training.intervals import paired_difference


def test_identical_arms_differ_by_exactly_nothing() -> None:
    scores = np.random.default_rng(1).integers(0, 2, size=(3, 50))
    difference = paired_difference(scores, scores)
    assert (difference.mean, difference.low, difference.high) == (0.0, 0.0, 0.0)
    assert difference.verdict == "does not beat"


def test_an_arm_right_on_every_clip_the_other_misses_wins_by_one() -> None:
    difference = paired_difference(np.ones((2, 40)), np.zeros((2, 40)))
    assert (difference.mean, difference.low, difference.high) == (1.0, 1.0, 1.0)
    assert difference.per_seed == (1.0, 1.0) and difference.verdict == "beats"


def test_one_seed_gives_the_normal_interval_of_a_mean_of_clips() -> None:
    """+1 on half of 400 clips, 0 on the rest: mean 0.5, standard error sqrt(0.25 / 400) =
    0.025, so about 0.5 +- 1.96 x 0.025."""
    a = np.array([[1, 0] * 200])
    difference = paired_difference(a, np.zeros_like(a))
    assert difference.mean == 0.5
    assert difference.low == pytest.approx(0.5 - 1.96 * 0.025, abs=0.006)
    assert difference.high == pytest.approx(0.5 + 1.96 * 0.025, abs=0.006)


def test_pairing_removes_what_both_arms_share() -> None:
    """Both arms get the same hard half of the clips wrong and differ on 10 of 400 clips: paired,
    the interval is about the 10 clips (+2.5 points, well above zero), not the shared misses."""
    b = np.zeros((1, 400))
    b[0, :200] = 1
    a = b.copy()
    a[0, 200:210] = 1
    difference = paired_difference(a, b)
    assert difference.mean == pytest.approx(0.025)
    assert 0 < difference.low < 0.025 < difference.high < 0.05
    assert difference.verdict == "beats"


def test_seeds_that_disagree_widen_the_interval_across_zero() -> None:
    """Seed 0 says A is 20 points better on every clip, seed 1 that B is: resampling seeds puts
    zero well inside the interval, where clips alone would not."""
    a = np.zeros((2, 500))
    a[0, :100] = 1
    b = np.zeros((2, 500))
    b[1, :100] = 1
    difference = paired_difference(a, b)
    assert difference.per_seed == (0.2, -0.2) and difference.mean == 0.0
    assert difference.low < -0.15 and difference.high > 0.15
    assert difference.verdict == "does not beat"
    assert paired_difference(b[:1], a[:1]).verdict == "loses to"


def test_scores_that_cannot_be_paired_are_refused() -> None:
    with pytest.raises(ValueError, match="one shape"):
        paired_difference(np.ones((3, 10)), np.ones((3, 9)))
    with pytest.raises(ValueError, match="non-empty"):
        paired_difference(np.ones(10), np.ones(10))
    with pytest.raises(ValueError, match="resamples"):
        paired_difference(np.ones((1, 2)), np.ones((1, 2)), resamples=0)
