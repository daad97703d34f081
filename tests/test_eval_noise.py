"""python -m bench.eval_noise: the variance split and the one-draw / k-draw differences from a hand-written
evaluation whose numbers are known, and its one-line errors."""

import json

import numpy as np
import pytest

from bench import eval_noise


def write_evaluation(path, base_each: list[list[float]], policy_each: list[list[float]], k: int = 2):
    """An evaluate.py run directory as the script reads it: results.json and samples.jsonl with gold_each."""
    path.mkdir(parents=True)
    results = {"base": "base", "policies": {"base": {}, "ppo": {}}, "settings": {"samples_per_prompt": k}}
    (path / "results.json").write_text(json.dumps(results))
    rows = [
        {"index": i, "base": {"gold_each": b, "rm_each": b}, "ppo": {"gold_each": p, "rm_each": p}}
        for i, (b, p) in enumerate(zip(base_each, policy_each))
    ]
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_noise_split_by_hand():
    # differences per prompt: (1, 3) and (2, 2): within = mean(var(1,3), var(2,2)) = mean(2, 0) = 1;
    # prompt means 2 and 2: their variance 0, less within / k = 0.5 -> clipped at 0
    assert eval_noise.noise_split(np.array([[1.0, 3.0], [2.0, 2.0]])) == (0.0, 1.0)
    # no draw noise: the prompts' variance is all there is
    between, within = eval_noise.noise_split(np.array([[0.0, 0.0], [2.0, 2.0]]))
    assert (between, within) == (2.0, 0.0)


def test_one_draw_against_the_mean_of_k(tmp_path):
    base = [[0.0, 0.0]] * 4
    ppo = [[1.0, -1.0], [1.0, 0.0], [-1.0, 1.0], [0.0, 1.0]]  # first draws: 1 1 -1 0; means: 0 .5 0 .5
    draws, name = eval_noise.read_draws(write_evaluation(tmp_path / "run", base, ppo), "gold")
    assert name == "base" and draws["ppo"].shape == (4, 2)
    row = eval_noise.compare(draws, "base", samples=200, confidence=0.95)["ppo"]
    assert row["one_draw"][0] == pytest.approx(0.25) and row["k_draws"][0] == pytest.approx(0.25)
    assert row["within"] == pytest.approx(np.mean([2.0, 0.5, 2.0, 0.5]))
    assert row["width_ratio"] < 1  # the mean of two draws per prompt pins the difference down better
    assert "ppo" in eval_noise.table({"ppo": row}, "base")


def test_an_evaluation_with_one_draw_per_prompt_is_refused(tmp_path):
    path = write_evaluation(tmp_path / "run", [[0.0]], [[1.0]], k=1)
    with pytest.raises(SystemExit, match="samples_per_prompt=1: run evaluate.py with evaluation.samples_per_prompt"):
        eval_noise.read_draws(path, "gold")
    with pytest.raises(SystemExit, match="no results.json"):
        eval_noise.read_draws(tmp_path, "gold")
