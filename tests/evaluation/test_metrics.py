"""The pure metric functions on cases with known answers."""

import numpy as np
import pytest

from rlhf.evaluation import metrics as M
from rlhf.evaluation.metrics import Interval


@pytest.mark.parametrize("seed", range(5))
def test_bootstrap_interval_contains_the_mean_and_is_reproducible(seed):
    values = np.random.default_rng(seed).normal(loc=seed, scale=2.0, size=40)
    interval = M.bootstrap_interval(values, n_samples=500, confidence=0.95, seed=7)
    assert interval.low <= interval.mean <= interval.high
    assert interval.mean == pytest.approx(values.mean())
    assert interval.low < interval.high and interval.n == 40
    assert M.bootstrap_interval(values, n_samples=500, confidence=0.95, seed=7) == interval
    wider = M.bootstrap_interval(values, n_samples=500, confidence=0.99, seed=7)
    assert wider.low <= interval.low and wider.high >= interval.high


def test_bootstrap_interval_of_constant_and_single_values_is_a_point():
    assert M.bootstrap_interval([0.3, 0.3, 0.3]) == M.Interval(0.3, 0.3, 0.3, 3)
    assert M.bootstrap_interval([1.5]) == M.Interval(1.5, 1.5, 1.5, 1)
    with pytest.raises(ValueError):
        M.bootstrap_interval([])


def test_identical_responses_give_win_rate_one_half():
    scores = [0.1, -0.4, 0.9, 0.9]
    assert M.win_rate(scores, scores) == 0.5
    assert M.pairwise_wins(scores, scores).tolist() == [0.5] * 4


def test_win_rate_counts_ties_as_one_half():
    # win, tie, loss, win -> (1 + 0.5 + 0 + 1) / 4
    assert M.win_rate([2.0, 1.0, 0.0, 3.0], [1.0, 1.0, 1.0, 2.0]) == pytest.approx(0.625)
    with pytest.raises(ValueError):
        M.win_rate([1.0], [1.0, 2.0])


def test_policy_equal_to_reference_has_implicit_reward_accuracy_one_half():
    logps_chosen, logps_rejected = [-10.0, -3.0, -8.0], [-4.0, -9.0, -8.5]
    margins = M.implicit_reward_margins(logps_chosen, logps_chosen, logps_rejected, logps_rejected)
    assert margins.tolist() == [0.0, 0.0, 0.0]
    assert M.margin_accuracy(margins) == 0.5


def test_implicit_reward_margins_by_hand():
    # pair 1: chosen gained 2 nats over ref, rejected lost 1 -> margin 3; pair 2: chosen lost 1, rejected gained 1 -> -2
    margins = M.implicit_reward_margins([-8.0, -6.0], [-10.0, -5.0], [-11.0, -4.0], [-10.0, -5.0])
    assert margins.tolist() == [3.0, -2.0]
    assert M.margin_accuracy(margins) == 0.5
    assert M.margin_accuracy([1.0, 2.0, -1.0, 0.0]) == pytest.approx((1 + 1 + 0 + 0.5) / 4)


def test_length_normalised_margins_by_hand():
    # chosen: -10 over 5 tokens = -2 per token; rejected: -9 over 3 = -3 per token -> +1
    # (chosen wins despite a lower sum)
    margins = M.length_normalised_margins([-10.0], [5], [-9.0], [3])
    assert margins.tolist() == [pytest.approx(1.0)]
    assert M.margin_accuracy(margins) == 1.0


def test_distinct_n():
    assert M.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # (a b), (b a), (a b)
    assert M.distinct_n(["the cat sat", "the cat ran"], 2) == pytest.approx(3 / 4)
    assert M.distinct_n(["Hello hello HELLO"], 1) == pytest.approx(1 / 3)  # lower-cased
    assert M.distinct_n(["one", ""], 2) == 0.0
    assert M.distinct_n(["x y z w"], 2) == 1.0


def test_kl_summary():
    zero = M.kl_summary([0.0, 0.0, 0.0])
    assert (zero["mean"], zero["low"], zero["high"], zero["negative_share"]) == (0.0, 0.0, 0.0, 0.0)
    some = M.kl_summary([1.0, -0.5, 2.0, 0.5], n_samples=300)
    assert some["mean"] == pytest.approx(0.75) and some["negative_share"] == 0.25 and some["max"] == 2.0
    assert some["low"] <= some["mean"] <= some["high"]


def test_reward_hacking_flag_needs_both_intervals_past_zero():
    up, down, flat = Interval(0.3, 0.1, 0.5, 8), Interval(-0.2, -0.3, -0.1, 8), Interval(0.0, -0.1, 0.1, 8)
    assert M.reward_hacking(up, down) == "likely reward hacking"  # reward surely up, gold surely down
    assert M.reward_hacking(up, flat) == "reward up, gold flat"  # the reward gain alone is significant
    assert M.reward_hacking(up, Interval(0.2, 0.1, 0.3, 8)) == "not flagged"  # a real gain on both
    assert M.reward_hacking(flat, down) == "not flagged"  # just worse
    # issue 39's default pipeline run (Zen 3): both intervals cross 0, the bare means had flagged it
    crossing_reward, crossing_gold = Interval(0.2, -0.023, 0.427, 256), Interval(-0.02, -0.089, 0.051, 256)
    assert M.reward_hacking(crossing_reward, crossing_gold) == "not flagged"
    assert M.reward_hacking({"low": 0.1, "high": 0.5}, {"low": -0.3, "high": -0.1}) == "likely reward hacking"
    slightly_down = Interval(-0.2, -0.3, -0.08, 8)
    assert M.reward_hacking(up, slightly_down, margin=0.09) == "reward up, gold flat"  # gold's -0.08: in the margin
    assert M.reward_hacking(up, None) is None  # no gold judge


def test_constant_paired_differences_give_a_zero_width_interval_and_a_verdict():
    base = np.array([-2.0, 0.5, 3.0, 1.0])  # prompts of very different difficulty
    diff = M.paired_difference(base + 0.25, base, n_samples=200, seed=3)
    assert diff == M.Interval(0.25, 0.25, 0.25, 4)
    assert M.verdict(diff, "ppo", "dpo", 0.95) == "ppo better"
    assert M.verdict(M.paired_difference(base, base + 0.25), "ppo", "dpo", 0.95) == "dpo better"
    same = M.paired_difference(base, base)
    assert same == M.Interval(0.0, 0.0, 0.0, 4)
    assert M.verdict(same, "ppo", "dpo", 0.95) == "no difference at 95%"  # touching 0 is no difference
    with pytest.raises(ValueError, match="aligned"):
        M.paired_difference([1.0, 2.0], [1.0])


def test_symmetric_differences_give_no_difference_at_the_configured_level():
    a = np.array([1.0, -1.0, 2.0, -2.0, 0.5, -0.5] * 4)
    diff = M.paired_difference(a, np.zeros_like(a), n_samples=500, confidence=0.9, seed=0)
    assert diff.mean == 0.0 and diff.low < 0 < diff.high
    assert M.verdict(diff, "ppo", "dpo", 0.9) == "no difference at 90%"


def test_pairing_removes_the_prompt_to_prompt_spread():
    # b is a, 0.1 lower on every prompt but one; the prompts' own spread (+-5) swamps 0.1 in unpaired intervals
    a = np.random.default_rng(0).normal(0.0, 5.0, size=64)
    b = a - 0.1
    b[0] = a[0] + 0.05
    paired = M.paired_difference(a, b, n_samples=500)
    unpaired_a, unpaired_b = M.bootstrap_interval(a, 500), M.bootstrap_interval(b, 500, seed=1)
    assert unpaired_a.low < unpaired_b.high  # the separate intervals overlap: no verdict from them
    assert paired.mean == pytest.approx((63 * 0.1 - 0.05) / 64)
    assert 0 < paired.low <= paired.high <= 0.1
    assert M.verdict(paired, "dpo", "base", 0.95) == "dpo better"


def test_comparison_pairs_put_method_against_method_first_then_each_against_base():
    names = ["base", "dpo", "ppo", "grpo", "rloo"]
    assert M.comparison_pairs(names, "base") == [
        ("ppo", "dpo"),
        ("grpo", "dpo"),
        ("grpo", "ppo"),
        ("rloo", "dpo"),
        ("rloo", "ppo"),
        ("rloo", "grpo"),
        ("dpo", "base"),
        ("ppo", "base"),
        ("grpo", "base"),
        ("rloo", "base"),
    ]
    assert M.comparison_pairs(["dpo", "ppo"], None) == [("ppo", "dpo")]
    assert M.comparison_pairs(["base"], "base") == []


def test_paired_comparisons_rows():
    scores = {
        "base": {"rm": [0.0, 1.0, 2.0], "gold": [0.0, 0.0, 0.5]},
        "dpo": {"rm": [1.0, 2.0, 3.0], "gold": [0.0, 0.0, 0.5]},
        "ppo": {"rm": [0.5, 0.5, 0.5]},  # no gold score: only the RM is compared
    }
    rows = M.paired_comparisons(scores, [("dpo", "base"), ("ppo", "dpo")], n_samples=100, confidence=0.95, seed=1)
    assert [(r["a"], r["b"], r["score"]) for r in rows] == [("dpo", "base", "rm"), ("dpo", "base", "gold"),
                                                            ("ppo", "dpo", "rm")]  # fmt: skip
    assert rows[0] == {"a": "dpo", "b": "base", "score": "rm", "mean_diff": 1.0, "interval": [1.0, 1.0], "n": 3,
                       "verdict": "dpo better"}  # fmt: skip
    assert rows[1]["verdict"] == "no difference at 95%" and rows[1]["interval"] == [0.0, 0.0]
    assert rows[2]["mean_diff"] == pytest.approx(-1.5)  # ppo - dpo: 0.5 - [1, 2, 3]
    assert rows[2]["interval"][0] < rows[2]["interval"][1] < 0 and rows[2]["verdict"] == "dpo better"
