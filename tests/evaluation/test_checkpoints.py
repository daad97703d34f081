"""evaluation.checkpoints on real tiny runs of every policy algorithm: each kept checkpoint is scored on the same
prompts, judge and gold as the policy, with the cumulative cost its run recorded when saving it."""

import json

import pytest
from omegaconf import open_dict

from rlhf.evaluation.checkpoints import policy_checkpoints, run_checkpoints
from rlhf.evaluation.run import evaluate
from rlhf.experiment import run_experiment
from rlhf.run import costs
from tests.algos.helpers import rm_outputs
from tests.conftest import compose_train, tiny_overrides
from tests.evaluation.helpers import tiny_evaluate

# Each saves a checkpoint before its last step and one at it (the final: the policy itself).
RUNS = {
    "sft": {"algo.save_every": "2", "algo.keep_checkpoints": "5"},
    "dpo": {"algo.save_every": "2", "algo.keep_checkpoints": "5"},
    "ppo": {},  # tiny: 2 iterations, save_every 1
    "grpo": {"algo.keep_checkpoints": "5"},  # tiny: 4 steps, save_every 2
    "rloo": {"algo.keep_checkpoints": "5"},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, model_cache):
    """One tiny run per policy algorithm, against one tiny reward model."""
    outputs = rm_outputs(tmp_path_factory)
    runs = {}
    for algo, extra in RUNS.items():
        run_experiment(compose_train(tiny_overrides(algo=algo, **extra), outputs_root=outputs), outputs / algo / "r")
        runs[algo] = outputs / algo / "r"
    return outputs, runs


@pytest.fixture(scope="module")
def results(trained, tmp_path_factory):
    outputs, runs = trained
    out = tmp_path_factory.mktemp("evaluation")
    cfg = tiny_evaluate(outputs, judge=str(outputs / "latest" / "rm"), **{"evaluation.checkpoints": "true"})
    with open_dict(cfg):
        cfg.policies = {"base": "base", **{algo: str(run) for algo, run in runs.items()}}
    return out, evaluate(cfg, out / "run")


@pytest.mark.parametrize("algo", list(RUNS))
def test_every_checkpoint_records_a_cost_growing_with_its_step(trained, algo):
    _, runs = trained
    summary = json.loads((runs[algo] / "summary.json").read_text())
    saved = run_checkpoints(runs[algo], summary)
    assert len(saved) >= 2 and saved[-1].final and not any(c.final for c in saved[:-1])
    recorded = [c.cost for c in saved]
    assert all(recorded), algo
    for key in ("tokens_forwarded", "tokens_backpropagated", "episodes"):
        assert all(a[key] < b[key] for a, b in zip(recorded, recorded[1:])), (algo, key, recorded)
    seconds = [costs.training_seconds(c) for c in recorded]
    assert all(0 < a < b for a, b in zip(seconds, seconds[1:])), seconds
    assert recorded[-1]["episodes"] <= summary["episodes"]  # counted within the run's own total


@pytest.mark.parametrize("algo", list(RUNS))
def test_every_checkpoint_is_scored_beside_its_policy(trained, results, algo):
    _, runs = trained
    out, res = results
    summary = json.loads((runs[algo] / "summary.json").read_text())
    expected = [c.step for c in policy_checkpoints(runs[algo], summary)]
    points = [c for c in res["checkpoints"] if c["policy"] == algo]
    assert expected and [c["step"] for c in points[:-1]] == expected
    final = points[-1]
    assert final["final"] and final["step"] > expected[-1]
    assert final["gold_score"] == pytest.approx(res["policies"][algo]["gold_score"]["mean"])
    assert final["avg_reward"] == pytest.approx(res["policies"][algo]["avg_reward"]["mean"])
    for point in points:
        assert point["gold_score_interval"]["low"] <= point["gold_score"] <= point["gold_score_interval"]["high"]
    for key in ("train_seconds", "train_flops", "tokens_forwarded", "episodes"):
        assert all(a[key] < b[key] for a, b in zip(points, points[1:])), (algo, key)


def test_the_trajectory_is_reported(results):
    out, res = results
    assert not any(c["policy"] == "base" for c in res["checkpoints"])
    assert "trajectory.png" in res["plots"] and (out / "run" / "trajectory.png").stat().st_size > 0
    md = (out / "run" / "results.md").read_text()
    assert md.count("| ppo | ") >= 2 and "## Checkpoints" in md  # the policy's row and its checkpoint's
    assert json.loads((out / "run" / "results.json").read_text())["checkpoints"] == res["checkpoints"]


@pytest.mark.parametrize("algo", ["ppo", "grpo", "rloo"])
def test_the_in_run_held_out_change_has_an_interval(trained, algo):
    _, runs = trained
    summary = json.loads((runs[algo] / "summary.json").read_text())
    for score in ("rm_score", "gold_score"):
        change = summary[f"{score}_change"]
        assert change == pytest.approx(summary[f"{score}_final"] - summary[f"{score}_start"])
        assert summary[f"{score}_change_low"] <= change <= summary[f"{score}_change_high"]


def test_ppo_checkpoints_is_still_understood(tmp_path):
    from rlhf.config import from_node
    from rlhf.evaluation.run import Settings

    def settings(**extra):
        return from_node(Settings, tiny_evaluate(tmp_path, **extra).evaluation, "evaluation")

    assert not settings().scores_checkpoints
    assert settings(**{"evaluation.ppo_checkpoints": "true"}).scores_checkpoints  # the deprecated name
    assert settings(**{"evaluation.checkpoints": "true"}).scores_checkpoints
