"""The hierarchical bootstrap (seeds, then prompts within each drawn seed) on data whose answer is known, and the
verdicts the tournament prints."""

import numpy as np
import pytest

from rlhf.evaluation.metrics import Interval, bootstrap_interval, verdict
from rlhf.tournament.aggregate import label
from rlhf.tournament.stats import hierarchical_bootstrap, paired_differences

BOOT = {"n_samples": 4000, "confidence": 0.95, "seed": 0}


def width(interval) -> float:
    return interval.high - interval.low


def test_constant_values_give_a_zero_width_interval():
    interval = hierarchical_bootstrap([[0.3] * 5, [0.3] * 7, [0.3] * 2], **BOOT)
    assert (interval.mean, interval.low, interval.high, interval.n) == pytest.approx((0.3, 0.3, 0.3, 3))


def test_constant_differences_give_a_zero_width_interval():
    a = [np.array([1.0, 2.0, 5.0]), np.array([-1.0, 0.0, 4.0])]
    b = [x - 0.25 for x in a]  # a - b = 0.25 on every prompt of every seed
    interval = hierarchical_bootstrap(paired_differences(a, b), **BOOT)
    assert (interval.mean, interval.low, interval.high) == pytest.approx((0.25, 0.25, 0.25))


def test_seeds_constant_within_vary_only_by_seed():
    # Seeds at 0 and 1: the resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 2.5% and
    # 97.5% quantiles are 0 and 1; the estimate is the mean of the seed means.
    interval = hierarchical_bootstrap([[0.0] * 4, [1.0] * 4], **BOOT)
    assert (interval.mean, interval.low, interval.high) == (0.5, 0.0, 1.0)


def test_every_seed_weighs_the_same_whatever_its_prompt_count():
    # pooled over prompts the mean would be 4/6; per seed it is (0 + 1) / 2
    assert hierarchical_bootstrap([[0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], **BOOT).mean == 0.5


def test_one_seed_is_the_prompt_bootstrap():
    values = np.random.default_rng(1).normal(size=40)
    ours, plain = hierarchical_bootstrap([values], **BOOT), bootstrap_interval(values, **BOOT)
    assert ours.mean == pytest.approx(plain.mean)
    assert ours.low == pytest.approx(plain.low, abs=0.03) and ours.high == pytest.approx(plain.high, abs=0.03)


def test_identical_seeds_collapse_to_the_prompt_bootstrap_of_all_their_prompts():
    # No seed-to-seed variation: only the prompts vary, as in one bootstrap over the 3 x 40 prompts.
    values = np.random.default_rng(2).normal(size=40)
    ours = hierarchical_bootstrap([values, values, values], **BOOT)
    pooled = bootstrap_interval(np.tile(values, 3), **BOOT)
    assert ours.mean == pytest.approx(pooled.mean)
    assert width(ours) == pytest.approx(width(pooled), rel=0.1)
    assert width(ours) < 0.7 * width(bootstrap_interval(values, **BOOT))  # narrower than one seed's prompts


def test_seed_noise_widens_the_interval():
    rng = np.random.default_rng(3)
    prompts = rng.normal(size=(3, 40))
    shifted = prompts + np.array([[-2.0], [0.0], [2.0]])  # the training runs disagree
    assert width(hierarchical_bootstrap(shifted, **BOOT)) > 3 * width(hierarchical_bootstrap(prompts, **BOOT))


def test_the_same_data_give_the_same_interval():
    groups = np.random.default_rng(4).normal(size=(2, 10))
    assert hierarchical_bootstrap(groups, **BOOT) == hierarchical_bootstrap(groups, **BOOT)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        hierarchical_bootstrap([[1.0], []])
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
