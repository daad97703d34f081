"""The proxy and judge halves of the training pairs: disjoint, covering, seeded by the dataset seed only."""

import pytest

from rlhf.data.halves import half_indices, resolve_pairs, select_pairs
from rlhf.errors import ConfigError


@pytest.mark.parametrize("n", [2, 7, 100])
def test_halves_are_disjoint_and_cover_every_pair(n):
    proxy, judge = half_indices(n, seed=0)
    assert not set(proxy) & set(judge)
    assert sorted(proxy + judge) == list(range(n))
    assert len(proxy) == (n + 1) // 2  # the proxy takes the odd pair


def test_halves_follow_the_seed_and_mix_the_pairs():
    assert half_indices(100, seed=0) == half_indices(100, seed=0)
    assert half_indices(100, seed=0) != half_indices(100, seed=1)
    proxy, _ = half_indices(100, seed=0)
    assert proxy != list(range(50))  # a permutation, not the file's first half (HH files are ordered by subset)


def test_selected_halves_partition_the_examples_in_their_order():
    examples = [{"id": i} for i in range(9)]
    proxy = select_pairs(examples, "proxy_half", seed=3)
    judge = select_pairs(examples, "judge_half", seed=3)
    assert sorted(e["id"] for e in proxy + judge) == list(range(9))
    assert [e["id"] for e in proxy] == sorted(e["id"] for e in proxy)
    assert select_pairs(examples, "all", seed=3) == examples


@pytest.mark.parametrize(
    "choice, dataset, expected",
    [
        ("auto", "hh_synthetic", "all"),  # the gold judge judges there: the reward model may see every pair
        ("auto", "hh_rlhf", "proxy_half"),  # the other half is the judge's
        ("judge_half", "hh_synthetic", "judge_half"),
        ("all", "hh_rlhf", "all"),
    ],
)
def test_auto_is_all_with_a_gold_judge_else_the_proxy_half(choice, dataset, expected):
    assert resolve_pairs(choice, dataset) == expected


def test_bad_choices_and_too_few_pairs_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"unknown algo\.pairs='half': valid values are auto, all"):
        resolve_pairs("half", "hh_rlhf")
    with pytest.raises(ConfigError, match=r"algo\.pairs=judge_half: 1 training pair cannot be halved"):
        select_pairs([{"id": 0}], "judge_half", seed=0)
