"""python -m bench.ppo_levers: arms from the runs' overrides, gains and paired differences from hand-written
run directories whose numbers are known, and the one-line errors."""

import json

import numpy as np
import pytest

from bench import ppo_levers as levers


def write_run(path, seed: int, overrides: list[str], start: list[float], final: list[float], wall=100.0, kl=1.5):
    """A finished PPO run as the study reads it: .hydra/, summary.json, eval_samples.jsonl."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(f"seed: {seed}\n")
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in [*overrides, f"seed={seed}"]))
    summary = {"algo": "ppo", "wall_time_s": wall, "kl_final": kl, "phase_seconds": {"evaluation": 20.0}}
    (path / "summary.json").write_text(json.dumps(summary))
    rows = [{"when": "start", "step": 0, "prompt": f"p{i}", "gold_score": s} for i, s in enumerate(start)]
    rows += [{"when": "final", "step": 12, "prompt": f"p{i}", "gold_score": f} for i, f in enumerate(final)]
    (path / levers.EVAL_SAMPLES).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def study(tmp_path):
    """Two arms x two seeds, 4 prompts: adapter gains 0.1 everywhere, policy 0.3; the rm override is shared."""
    shared = "algo.reward_model=/rm"
    runs = []
    for seed in (0, 1):
        start = [0.0, 0.5, -0.5, 1.0]
        runs.append(
            write_run(
                tmp_path / f"a{seed}", seed, [shared, "algo.value_model=adapter"], start, [s + 0.1 for s in start]
            )
        )
        runs.append(
            write_run(
                tmp_path / f"p{seed}",
                seed,
                [shared, "algo.value_model=policy"],
                start,
                [s + 0.3 for s in start],
                wall=70.0,
            )
        )
    return runs


def test_arms_are_the_overrides_the_runs_do_not_share(study):
    arms = levers.group_arms([levers.read_run(p) for p in study])
    assert sorted(arms) == ["algo.value_model=adapter", "algo.value_model=policy"]
    assert [r.seed for r in arms["algo.value_model=policy"]] == [0, 1]
    run = arms["algo.value_model=policy"][0]
    assert run.train_seconds == 50.0  # wall 70 - evaluation 20
    np.testing.assert_allclose(run.final - run.start, 0.3)


def test_gains_cost_and_the_paired_difference_match_the_hand_computed_values(study):
    arms = levers.group_arms([levers.read_run(p) for p in study])
    text, numbers = levers.report(arms, "algo.value_model=adapter", samples=200, confidence=0.95, score="gold_score")
    policy = numbers["arms"]["algo.value_model=policy"]
    assert policy["gain"]["mean"] == pytest.approx(0.3)
    assert policy["seeds_above_zero"] == 2  # a constant +0.3 gain: a zero-width interval above 0 in each seed
    assert policy["gain_per_100s"] == pytest.approx(0.3 / 50 * 100)
    assert policy["vs_baseline"] == pytest.approx([0.2, 0.2, 0.2])  # final - final, paired: 0.3 - 0.1
    assert numbers["arms"]["algo.value_model=adapter"]["vs_baseline"] is None
    assert "algo.value_model=policy better" in text


def test_an_arm_from_another_start_is_also_scored_against_the_baselines_start(study, tmp_path):
    # an SFT start 0.2 above the base, then a PPO gain of 0.1: 0.3 over the base policy the baseline started from
    start = [0.2, 0.7, -0.3, 1.2]
    sft = [
        write_run(
            tmp_path / f"s{seed}",
            seed,
            ["algo.reward_model=/rm", "algo.init_adapter=/sft"],
            start,
            [s + 0.1 for s in start],
        )
        for seed in (0, 1)
    ]
    arms = levers.group_arms([levers.read_run(p) for p in study + sft])
    text, numbers = levers.report(arms, "algo.value_model=adapter", samples=200, confidence=0.95, score="gold_score")
    from_sft = numbers["arms"]["algo.init_adapter=/sft"]
    assert from_sft["gain"]["mean"] == pytest.approx(0.1)  # over its own start
    assert from_sft["vs_baseline_start"] == pytest.approx([0.3, 0.3, 0.3])
    assert from_sft["vs_baseline"] == pytest.approx([0.2, 0.2, 0.2])  # (base + 0.3) - (base + 0.1)
    assert numbers["arms"]["algo.value_model=policy"]["vs_baseline_start"] is None  # same start: its gain says it
    assert "final gold - baseline's start" in text and "= gain" in text
    plain, _ = levers.report(
        levers.group_arms([levers.read_run(p) for p in study]),
        "algo.value_model=adapter",
        samples=50,
        confidence=0.95,
        score="gold_score",
    )
    assert "baseline's start" not in plain


def test_a_baseline_that_is_no_arm_names_the_arms(study):
    arms = levers.group_arms([levers.read_run(p) for p in study])
    with pytest.raises(SystemExit, match="algo.value_model=adapter"):
        levers.report(arms, "algo.value_model=none", 10, 0.95, "gold_score")


def test_a_seed_twice_in_one_arm_is_refused(tmp_path):
    runs = [write_run(tmp_path / f"r{i}", 0, ["algo.lr=1"], [0.0], [1.0]) for i in range(2)]
    with pytest.raises(SystemExit, match="seed"):
        levers.group_arms([levers.read_run(p) for p in runs])


def test_a_run_without_gold_points_at_the_rm_score(tmp_path):
    path = write_run(tmp_path / "r", 0, [], [0.0], [1.0])
    rows = [json.loads(line) for line in (path / levers.EVAL_SAMPLES).read_text().splitlines()]
    (path / levers.EVAL_SAMPLES).write_text("".join(json.dumps({**r, "gold_score": None}) + "\n" for r in rows))
    with pytest.raises(SystemExit, match="--score rm_score"):
        levers.read_run(path)


def test_a_directory_that_is_no_online_run_is_named(tmp_path):
    with pytest.raises(SystemExit, match="not a finished PPO / GRPO / RLOO run"):
        levers.read_run(tmp_path)
    path = write_run(tmp_path / "dpo", 0, [], [0.0], [1.0])
    (path / "summary.json").write_text(json.dumps({"algo": "dpo", "wall_time_s": 1.0, "kl_final": 0.0}))
    with pytest.raises(SystemExit, match="algo=dpo, the lever study reads ppo, grpo, rloo runs"):
        levers.read_run(path)


def test_grpo_runs_are_read_as_ppo_runs(tmp_path):
    path = write_run(tmp_path / "grpo", 0, [], [0.0, 1.0], [0.5, 1.0])
    (path / "summary.json").write_text(json.dumps({"algo": "grpo", "wall_time_s": 50.0, "kl_final": 1.0}))
    run = levers.read_run(path)
    assert run.train_seconds == 50.0 and run.final.mean() - run.start.mean() == pytest.approx(0.25)
