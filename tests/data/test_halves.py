"""The proxy and judge halves by content: by a salted hash of the prompt, so disjoint whatever rows surround a pair;
the record every run keeps; and the check that refuses an overlapping or uncheckable judge."""

import logging

import numpy as np
import pytest

from rlhf.data.halves import (
    SCHEME,
    check_disjoint,
    half_of,
    half_record,
    overlap_problem,
    pair_hash,
    resolve_pairs,
    select_pairs,
    training_pairs,
)
from rlhf.errors import ConfigError


def pair(i: int, prompt: int | None = None) -> dict:
    """A preference pair; ``prompt`` (default i) picks its prompt, so two pairs may share one."""
    p = i if prompt is None else prompt
    return {
        "prompt": [{"role": "user", "content": f"question {p}"}],
        "chosen": [{"role": "assistant", "content": f"good answer {i}"}],
        "rejected": [{"role": "assistant", "content": f"bad answer {i}"}],
        "family": "advice",
    }


def prompts(examples) -> set[str]:
    return {ex["prompt"][0]["content"] for ex in examples}


def test_a_proxy_on_1000_rows_and_a_judge_on_999_of_them_share_no_prompt():
    # issue 39: the old index permutation of 1,000 and 999 rows shared 74 of the judge's 499 pairs
    rows = [pair(i, prompt=i // 2 if i < 200 else None) for i in range(1000)]  # the first 200 rows: 2 pairs a prompt
    proxy = select_pairs(rows, "proxy_half", salt=0)
    judge = select_pairs(rows[:999], "judge_half", salt=0)
    assert not prompts(proxy) & prompts(judge)
    assert 400 < len(proxy) < 600 and 400 < len(judge) < 600  # a fair coin per prompt
    assert all(half_of(rows[2 * k], 0) == half_of(rows[2 * k + 1], 0) for k in range(100))  # a prompt's pairs together
    assert overlap_problem(half_record(judge, "judge_half", 0), half_record(proxy, "proxy_half", 0)) is None


def test_halves_follow_the_salt_and_cover_every_pair():
    rows = [pair(i) for i in range(200)]
    proxy, judge = select_pairs(rows, "proxy_half", 3), select_pairs(rows, "judge_half", 3)
    assert sorted(map(id, proxy + judge)) == sorted(map(id, rows))
    assert proxy == [r for r in rows if r in proxy]  # original order kept
    assert select_pairs(rows, "proxy_half", 4) != proxy  # another dataset.seed, another split
    assert select_pairs(rows, "all", 3) == rows


def test_the_record_hashes_the_pairs_not_their_order():
    rows = [pair(i) for i in range(10)]
    record = half_record(rows, "proxy_half", 0)
    assert record["pairs_sha256"] == half_record(rows[::-1], "proxy_half", 0)["pairs_sha256"]
    assert record["pairs_sha256"] != half_record(rows[1:], "proxy_half", 0)["pairs_sha256"]
    assert (record["pairs"], record["pairs_salt"], record["pairs_scheme"], record["pairs_count"]) == (
        "proxy_half", 0, SCHEME, 10
    )  # fmt: skip
    assert half_record(rows, "all", 0)["pairs_salt"] is None
    assert pair_hash(pair(1)) == pair_hash(pair(1)) != pair_hash(pair(2))


@pytest.mark.parametrize(
    "choice, dataset, protocol, expected",
    [
        ("auto", "hh_rlhf", False, "all"),  # the switch off: every pair (a plain `train.py algo=rm dataset=hh_rlhf`)
        ("auto", "hh_rlhf", True, "proxy_half"),  # the judge protocol: the judge has the other half
        ("auto", "hh_synthetic", True, "all"),  # the gold judge judges there
        ("judge_half", "hh_synthetic", False, "judge_half"),
        ("all", "hh_rlhf", True, "all"),
    ],
)
def test_auto_is_the_proxy_half_only_under_the_judge_protocol_without_a_gold_judge(choice, dataset, protocol, expected):
    assert resolve_pairs(choice, dataset, protocol) == expected


def test_one_log_line_says_which_pairs_a_run_trains_on(caplog):
    rows = [pair(i) for i in range(50)]
    with caplog.at_level(logging.INFO, logger="rlhf.data.halves"):
        chosen, record = training_pairs(rows, "auto", "hh_rlhf", 0, True, "dpo")
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(
        f"algo=dpo trains on pairs=proxy_half: {len(chosen)} of 50 training pairs of dataset=hh_rlhf"
    )
    assert "dataset.judge_protocol=true" in line and record["pairs_count"] == len(chosen)


def records(judge: str, other: str, judge_salt: int = 0, other_salt: int = 0) -> tuple[dict, dict]:
    rows = [pair(i) for i in range(20)]
    return half_record(rows, judge, judge_salt), half_record(rows, other, other_salt)


@pytest.mark.parametrize(
    "judge, other, salts, problem",
    [
        ("judge_half", "proxy_half", (0, 0), None),
        ("all", "proxy_half", (0, 0), "overlap: the judge run trained on pairs=all"),
        ("judge_half", "all", (0, 0), "overlap: the other run trained on pairs=all"),
        ("proxy_half", "proxy_half", (0, 0), "overlap: both trained on pairs=proxy_half"),
        ("judge_half", "proxy_half", (0, 1), "cannot check: the halves were cut with different salts"),
    ],
)
def test_overlap_is_judged_from_the_two_records(judge, other, salts, problem):
    found = overlap_problem(*records(judge, other, *salts))
    assert found == problem if problem is None else found.startswith(problem)


def test_a_judge_on_all_pairs_or_without_a_record_is_refused_in_one_line():
    judge, proxy = records("all", "proxy_half")
    with pytest.raises(ConfigError) as caught:
        check_disjoint("judge", "runs/judge", judge, "the reward model policies.ppo optimised", "runs/rm", proxy)
    message = str(caught.value)
    assert message.startswith("judge=runs/judge: not independent of the reward model policies.ppo optimised (runs/rm)")
    assert "overlap: the judge run trained on pairs=all" in message and "dataset.judge_protocol=true" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match=r"cannot check: the other run records no pair half"):
        check_disjoint("judge", "runs/judge", judge, "policies.dpo", "runs/dpo", {"status": "finished"})


def test_a_prompt_goes_to_one_half_whatever_rows_surround_it():
    rows = [pair(i) for i in range(300)]
    rng = np.random.default_rng(0)
    shuffled = [rows[i] for i in rng.permutation(300)][:250]
    assert {pair_hash(r) for r in select_pairs(shuffled, "judge_half", 7)} <= {
        pair_hash(r) for r in select_pairs(rows, "judge_half", 7)
    }


def test_bad_choices_and_an_empty_half_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"unknown algo\.pairs='half': valid values are auto, all"):
        resolve_pairs("half", "hh_rlhf", False)
    lone = pair(0)
    other = "judge_half" if half_of(lone, 0) == "proxy_half" else "proxy_half"
    with pytest.raises(ConfigError, match=rf"algo\.pairs={other}: none of the 1 training pairs falls in that half"):
        select_pairs([lone], other, salt=0)
