"""The in-run held-out reading's start-to-final change (rlhf/modeling/held_out.py): paired per prompt, with an
interval, and a log sentence when that interval holds 0."""

import logging

import numpy as np

from rlhf.modeling.held_out import change_summary, start_to_final, within_noise


def records(rm: np.ndarray, gold: np.ndarray | None = None) -> list[dict]:
    return [
        {"prompt": f"p{i}", "rm_score": float(r), "gold_score": None if gold is None else float(gold[i])}
        for i, r in enumerate(rm)
    ]


def test_the_change_is_paired_per_prompt():
    """Prompts differ by far more than the change (sd 3 vs +0.5): unpaired, the interval would hold 0."""
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 3, 64)
    start, final = difficulty, difficulty + 0.5 + rng.normal(0, 0.1, 64)
    change = start_to_final(records(start, start), records(final, final))
    for key in ("rm_score_change", "gold_score_change"):
        c = change[key]
        assert c["mean"] == np.mean(final - start) and c["n"] == 64
        assert 0.4 < c["low"] < c["mean"] < c["high"] < 0.6
    assert within_noise(change) == []


def test_no_gold_no_gold_change_and_misaligned_prompts_no_change():
    start = records(np.zeros(8))
    assert set(start_to_final(start, records(np.ones(8)))) == {"rm_score_change"}
    assert start_to_final(start, records(np.ones(7))) == {}
    assert start_to_final(start, list(reversed(records(np.ones(8))))) == {}


def test_a_change_within_noise_is_said_in_the_log(caplog):
    rng = np.random.default_rng(1)
    start, final = rng.normal(0, 1, 16), rng.normal(-0.1, 1, 16)
    with caplog.at_level(logging.INFO, logger="rlhf.modeling.held_out"):
        flat = change_summary(records(start), records(final))
    assert flat["rm_score_change_low"] < 0 < flat["rm_score_change_high"]
    assert flat["rm_score_change"] == np.mean(final - start)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "within noise at 95%" in warnings[0] and "over 16 prompts" in warnings[0]
    assert any("held-out rm_score, start to final" in r.getMessage() for r in caplog.records)
