"""python -m bench.eval_seeds: policies named <arm>_s<seed> grouped into arms, differences from base per seed and
over seeds, and against a baseline arm paired by seed, on a hand-written evaluation whose numbers are known."""

import json

import pytest

from bench import eval_seeds


def write_evaluation(path, scores: dict[str, list[float]]):
    """An evaluate.py run directory as the script reads it: results.json (base = "base") and samples.jsonl."""
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"base": "base", "policies": {name: {} for name in scores}}))
    n = len(scores["base"])
    rows = [{"index": i, **{name: {"gold": s[i], "kl": 1.0} for name, s in scores.items()}} for i in range(n)]
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_arms_per_seed_over_seeds_and_against_the_baseline(tmp_path):
    base = [0.0, 1.0, 0.0, 1.0]
    scores = {
        "base": base,
        "sft": [5.0] * 4,  # no _s<seed>: not an arm
        "ppo_s0": [b + 0.5 for b in base],  # +0.5 on every prompt: an interval of zero width
        "ppo_s1": [b + 0.25 for b in base],
        "ppo_lr_s0": [b + 0.5 for b in base],  # the same as ppo in seed 0, 0.5 above it in seed 1
        "ppo_lr_s1": [b + 0.75 for b in base],
    }
    arms, base_column = eval_seeds.read_arms(write_evaluation(tmp_path / "run", scores), "gold")
    assert sorted(arms) == ["ppo", "ppo_lr"] and sorted(arms["ppo"]) == [0, 1]
    rows = eval_seeds.compare(arms, base_column, "ppo", samples=200, confidence=0.95)

    ppo = rows["ppo"]
    assert ppo["per_seed"][0] == pytest.approx([0.5, 0.5, 0.5]) and ppo["seeds_excluding_0"] == 2
    # over seeds: seed means 0.5 and 0.25, constant within: the t-interval over 2 seed means,
    # 0.375 +- t(0.975, 1) * 0.125 = 0.375 +- 1.588; two runs cannot exclude 0
    assert ppo["over_seeds"] == pytest.approx([0.375, 0.375 - 1.5882, 0.375 + 1.5882], abs=1e-3)
    assert ppo["over_seeds_verdict"] == "no difference at 95%"
    assert ppo["vs_baseline"] is None
    lr = rows["ppo_lr"]
    assert lr["over_seeds"][0] == pytest.approx(0.625)
    # against ppo: 0 in seed 0, +0.5 in seed 1: 0.25 +- 12.706 * 0.25 (the old bootstrap said [0, 0.5])
    assert lr["vs_baseline"] == pytest.approx([0.25, 0.25 - 3.1765, 0.25 + 3.1765], abs=1e-3)
    assert lr["vs_baseline_verdict"] == "no difference at 95%"
    assert "ppo_lr" in eval_seeds.table(rows, "gold", "ppo")


def test_bad_input_says_what_to_give(tmp_path):
    path = write_evaluation(tmp_path / "run", {"base": [0.0], "ppo": [1.0]})
    with pytest.raises(SystemExit, match=r"no policy is named <arm>_s<seed>"):
        eval_seeds.read_arms(path, "gold")
    with pytest.raises(SystemExit, match="no results.json"):
        eval_seeds.read_arms(tmp_path, "gold")
    path = write_evaluation(tmp_path / "two", {"base": [0.0], "ppo_s0": [1.0]})
    arms, base = eval_seeds.read_arms(path, "gold")
    with pytest.raises(SystemExit, match=r"--baseline 'dpo' is not an arm; the arms are: \['ppo'\]"):
        eval_seeds.compare(arms, base, "dpo", 10, 0.95)
    with pytest.raises(SystemExit, match=r"no 'rm' score for ppo_s0"):
        eval_seeds.read_arms(path, "rm")


def test_evaluations_that_scored_base_alike_pool_their_seeds_and_others_are_refused(tmp_path):
    base = [0.0, 1.0, 0.0, 1.0]
    first = write_evaluation(tmp_path / "first", {"base": base, "grpo_s0": [b + 0.5 for b in base]})
    fresh = write_evaluation(tmp_path / "fresh", {"base": base, "grpo_s3": [b - 0.25 for b in base]})
    arms, base_column = eval_seeds.read_pooled([first, fresh], "gold")
    assert sorted(arms["grpo"]) == [0, 3]
    rows = eval_seeds.compare(arms, base_column, None, samples=200, confidence=0.95)
    assert rows["grpo"]["over_seeds"][0] == pytest.approx(0.125)  # (0.5 - 0.25) / 2
    assert rows["grpo"]["seeds_excluding_0"] == 1

    other_draws = write_evaluation(tmp_path / "other", {"base": [1.0, 1.0, 0.0, 1.0], "grpo_s4": base})
    with pytest.raises(SystemExit, match=r"other: base's gold scores differ from .*first's: pool only evaluations"):
        eval_seeds.read_pooled([first, other_draws], "gold")
    again = write_evaluation(tmp_path / "again", {"base": base, "grpo_s0": base})
    with pytest.raises(SystemExit, match=r"again: grpo seed\(s\) \[0\] are in an earlier evaluation too"):
        eval_seeds.read_pooled([first, again], "gold")
