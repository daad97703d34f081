"""The crossed interval (S seeds x the same P prompts) on data whose answer is known, Holm's adjustment, and the
verdicts the tournament prints. Its coverage is tests/tournament/test_coverage.py."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from rlhf.evaluation.metrics import Interval, verdict
from rlhf.tournament.aggregate import label
from rlhf.tournament.stats import (
    central_probability,
    crossed_half_width,
    crossed_interval,
    crossed_p_value,
    holm,
    paired_differences,
)


def width(interval) -> float:
    return interval.high - interval.low


def test_constant_values_give_a_zero_width_interval():
    interval = crossed_interval([[0.3] * 5, [0.3] * 5, [0.3] * 5])
    assert (interval.mean, interval.low, interval.high, interval.n) == pytest.approx((0.3, 0.3, 0.3, 3))
    assert crossed_p_value([[0.3] * 5] * 3) == 0.0 and crossed_p_value([[0.0] * 5] * 3) == 1.0


def test_constant_differences_give_a_zero_width_interval():
    a = [np.array([1.0, 2.0, 5.0]), np.array([-1.0, 0.0, 4.0])]
    b = [x - 0.25 for x in a]  # a - b = 0.25 on every prompt of every seed
    interval = crossed_interval(paired_differences(a, b))
    assert (interval.mean, interval.low, interval.high) == pytest.approx((0.25, 0.25, 0.25))


def test_seeds_constant_within_give_the_t_interval_over_seed_means():
    # Seeds at 0 and 1, no prompt variation: seed means 0, 1; sd 0.7071, se 0.5, t(0.975, df 1) = 12.706.
    interval = crossed_interval([[0.0] * 4, [1.0] * 4])
    assert (interval.mean, interval.low, interval.high) == pytest.approx((0.5, 0.5 - 6.3531, 0.5 + 6.3531), abs=1e-3)


def test_without_a_shared_prompt_effect_it_is_the_t_interval_over_seed_means():
    # y[s, p] = seed offset + noise that cancels over each seed's prompts and each prompt's seeds: the prompt means
    # are all equal, so only the seed means (0.1, 0.4, 0.4) vary: mean 0.3, sd 0.1732, se 0.1, t(0.975, 2) = 4.303.
    noise = np.array([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    noise[2] = -(noise[0] + noise[1])
    table = np.array([[0.1], [0.4], [0.4]]) + noise
    interval = crossed_interval(table)
    assert (interval.mean, interval.low, interval.high) == pytest.approx((0.3, 0.3 - 0.4303, 0.3 + 0.4303), abs=1e-4)


def test_one_seed_is_the_t_interval_over_its_prompts():
    values = np.random.default_rng(1).normal(size=40)
    interval = crossed_interval([values])
    half = scipy_stats.t.ppf(0.975, 39) * values.std(ddof=1) / np.sqrt(40)
    assert (interval.low, interval.high) == pytest.approx((values.mean() - half, values.mean() + half))


def test_identical_seeds_are_no_more_evidence_than_one():
    # The same 40 prompt scores three times (a crossed design: every seed on the same prompts) are one seed's
    # evidence, not 120 prompts': the shared prompt effect is all the variance, so the interval is the
    # prompt interval of one seed (z instead of t_39: 1.960 / 2.023), not 1/sqrt(3) of it as the nested bootstrap had.
    values = np.random.default_rng(2).normal(size=40)
    ours, one = crossed_interval([values, values, values]), crossed_interval([values])
    assert width(ours) == pytest.approx(width(one) * 1.95996 / 2.02269, rel=1e-4)


def test_the_half_width_ends_are_the_t_and_the_normal_quantiles():
    assert crossed_half_width(2.0, 0.0, 4, 0.95) == pytest.approx(2.0 * 2.7764, abs=1e-4)  # t(0.975, 4)
    assert crossed_half_width(0.0, 3.0, 4, 0.95) == pytest.approx(3.0 * 1.95996, abs=1e-4)
    q = crossed_half_width(1.0, 1.0, 2, 0.95)  # between: solves the central probability
    assert central_probability(q, 1.0, 1.0, 2) == pytest.approx(0.95, abs=1e-6)


def test_seed_noise_widens_the_interval():
    rng = np.random.default_rng(3)
    prompts = rng.normal(size=(3, 40))
    shifted = prompts + np.array([[-2.0], [0.0], [2.0]])  # the training runs disagree
    assert width(crossed_interval(shifted)) > 3 * width(crossed_interval(prompts))


def test_the_p_value_agrees_with_the_interval():
    table = np.random.default_rng(5).normal(0.1, 0.5, size=(3, 64)) + np.array([[0.02], [-0.03], [0.05]])
    interval, p = crossed_interval(table), crossed_p_value(table)
    moved = table - interval.low  # shifted so the interval's low end sits on 0: p = 0.05 exactly
    assert crossed_p_value(moved) == pytest.approx(0.05, abs=1e-5)
    assert (p < 0.05) == (interval.low > 0 or interval.high < 0)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        crossed_interval([[1.0], []])
    with pytest.raises(ValueError, match="same prompts"):
        crossed_interval([[1.0, 2.0], [1.0]])
    with pytest.raises(ValueError, match="same prompts"):
        paired_differences([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ValueError, match="same seeds"):
        paired_differences([[1.0]], [[1.0], [2.0]])


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0.1, 0.4, "PPO better"), (-0.4, -0.1, "DPO better"), (-0.1, 0.4, "no difference at 95%"),
     (0.0, 0.4, "no difference at 95%")],
)  # fmt: skip
def test_verdicts_name_the_better_arm(low, high, expected):
    assert verdict(Interval((low + high) / 2, low, high, 3), label("ppo"), label("dpo"), 0.95) == expected


def test_labels():
    assert [label(n) for n in ("ppo", "dpo", "base", "chosen")] == ["PPO", "DPO", "base", "dataset chosen"]
