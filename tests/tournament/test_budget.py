"""The budget axis (--budget N): each arm's long run and its save points, and the cost frontier its checkpoints
give (hand-made evaluations whose per-prompt scores are constant within a seed, so every number is known)."""

import json
import subprocess
import sys

import pytest

from rlhf.tournament.cli import compose, new_plan
from rlhf.tournament.plan import EVALUATE, evaluate_command, load_plan, save_plan, train_command
from rlhf.tournament.report import write_report
from tests.conftest import REPO
from tests.tournament.fakes import fake_tournament


def test_each_arm_runs_budget_times_its_length_saving_at_every_1x(tmp_path):
    plan = new_plan(2, "dpo,ppo", tmp_path / "t", ["debug=tiny"], budget=4)
    for arm, key in (("dpo", "max_steps"), ("ppo", "iterations")):
        algo = compose("train", [f"algo={arm}", "debug=tiny"]).algo
        length = int(algo[key])
        argv = train_command(plan, arm, [0, 1])
        assert f"algo.{key}={4 * length}" in argv and f"algo.save_every={length}" in argv
        assert "algo.keep_checkpoints=4" in argv and "algo.lr_scheduler_type=constant_with_warmup" in argv
        assert f"algo.warmup_ratio={float(algo.warmup_ratio) / 4:g}" in argv
    assert not any("max_steps" in a for a in train_command(plan, "rm", [0]))  # the reward model is not an arm
    assert "evaluation.checkpoints=true" in evaluate_command(plan, 0)
    save_plan(plan)
    assert load_plan(plan.directory) == plan  # --resume keeps the budget


def test_an_arm_trained_by_epochs_has_no_length_to_multiply(tmp_path, capsys):
    from rlhf.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--budget: dpo trains by epochs here \(algo.max_steps=-1\)"):
        new_plan(2, "dpo", tmp_path / "t", ["debug=tiny", "dpo:algo.max_steps=-1"], budget=2)


# Per method, per budget level (1x, 2x): training seconds and every prompt's gold (= judge) score, both seeds alike.
LEVELS = {"dpo": [(10.0, 0.5), (20.0, 0.5)], "ppo": [(40.0, 0.2), (80.0, 0.8)]}


def add_checkpoints(plan):
    """Each seed's evaluation as with --budget 2: the 1x checkpoint and the final (2x) policy of each arm."""
    for seed in plan.seeds:
        directory = plan.job_dir(EVALUATE, seed)
        results = json.loads((directory / "results.json").read_text())
        rows = [json.loads(line) for line in (directory / "samples.jsonl").read_text().splitlines()]
        results["checkpoints"] = []
        for method, ((s1, g1), (s2, g2)) in LEVELS.items():
            for step, seconds, final in ((1, s1, False), (2, s2, True)):
                results["checkpoints"].append(
                    {
                        "policy": method,
                        "step": step,
                        "final": final,
                        "train_seconds": seconds,
                        "train_flops": 1e9 * seconds,
                    }  # fmt: skip
                )
            for row in rows:
                row[method].update(rm=g2, gold=g2, kl=1.0)
                row.setdefault("checkpoints", {})[method] = {"1": {"rm": g1, "gold": g1, "kl": 0.5}}
        (directory / "results.json").write_text(json.dumps(results))
        (directory / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_cost_frontier_its_equal_seconds_and_plateaus(tmp_path):
    plan = fake_tournament(tmp_path / "t")
    add_checkpoints(plan)
    report = write_report(plan.directory)
    frontier = report["cost_frontier"]
    assert frontier["score"] == "gold"
    for method, levels in LEVELS.items():
        points = frontier["levels"][method]
        assert [p["budget"] for p in points] == [0, 1, 2]  # the base, then one point per checkpoint
        assert [p["train_seconds"] for p in points] == [0.0, *(s for s, _ in levels)]
        assert [p["gold"]["mean"] for p in points] == pytest.approx([0.0, *(g for _, g in levels)])
        assert all(p["gold"]["low"] <= p["gold"]["mean"] <= p["gold"]["high"] for p in points)
    # common range: up to 20 s (dpo's largest budget); ppo at 20 s is a quarter of the way to its 0.2 at 40 s
    equal = frontier["equal_seconds"]
    assert [row["train_seconds"] for row in equal] == [5.0, 10.0, 15.0, 20.0]
    assert [row["dpo"]["mean"] for row in equal] == pytest.approx([0.25, 0.5, 0.5, 0.5])
    assert [row["ppo"]["mean"] for row in equal] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert frontier["plateau"]["dpo"] == {"budget": 1, "train_seconds": 10.0}  # 2x gained nothing over 1x
    assert frontier["plateau"]["ppo"]["budget"] is None  # 2x still beat 1x
    assert (plan.directory / "cost_frontier.png").stat().st_size > 0 and "cost_frontier.png" in report["plots"]
    md = (plan.directory / "report.md").read_text()
    assert "## Gold score at equal training seconds" in md
    assert "more compute stopped helping beyond 1x (10 s)" in md and "still helping at 2x (80 s)" in md


def test_without_checkpoints_there_is_no_frontier(tmp_path):
    report = write_report(fake_tournament(tmp_path / "t").directory)
    assert report["cost_frontier"] is None and "cost_frontier.png" not in report["plots"]


@pytest.mark.slow
def test_a_tiny_tournament_with_a_budget_axis(tmp_path):
    """2 seeds of rm, dpo and ppo at 2x their tiny lengths, every checkpoint evaluated, the frontier reported."""
    directory = tmp_path / "t"
    command = [sys.executable, "-m", "rlhf.tournament", "--seeds", "2", "--budget", "2", "--dir", str(directory),
               "debug=tiny", "evaluate:evaluation.n_pairs=4", "evaluate:evaluation.n_prompts=8"]  # fmt: skip
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    report = json.loads((directory / "report.json").read_text())
    frontier = report["cost_frontier"]
    for method in ("dpo", "ppo"):
        levels = frontier["levels"][method]
        assert [p["budget"] for p in levels] == [0, 1, 2]
        seconds = [p["train_seconds"] for p in levels]
        assert seconds[0] == 0 < seconds[1] < seconds[2]
    assert len(frontier["equal_seconds"]) == 4
    assert (directory / "cost_frontier.png").stat().st_size > 0
