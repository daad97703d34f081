"""The real driver on the tiny model: 2 seeds of rm, dpo and ppo, an evaluation per seed, the report; then
--resume finds nothing left to run. Minutes: marked slow."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def latest_links() -> dict[str, str]:
    latest = REPO / "outputs" / "latest"
    return {p.name: os.readlink(p) for p in latest.iterdir() if p.is_symlink()} if latest.is_dir() else {}


@pytest.mark.slow
def test_a_tiny_tournament_end_to_end(tmp_path):
    directory = tmp_path / "t"
    before = latest_links()
    command = [sys.executable, "-m", "rlhf.tournament", "--seeds", "2", "--dir", str(directory), "debug=tiny",
               "evaluate:evaluation.n_pairs=4"]  # fmt: skip
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    for stage, seeds in (("rm", "0,1"), ("dpo", "0,1"), ("ppo", "0,1"), ("evaluate", "0"), ("evaluate", "1")):
        assert f"tournament: stage {stage}, seeds {seeds}:" in out.stdout  # each command is printed

    report = json.loads((directory / "report.json").read_text())
    assert report["seeds"] == [0, 1] and list(report["methods"]) == ["base", "dpo", "ppo"]
    assert {d["verdict"] for d in report["differences"]} <= {
        "PPO better", "DPO better", "base better", "no difference at 95%"
    }  # fmt: skip
    assert [(d["a"], d["b"]) for d in report["differences"]][:2] == [("ppo", "dpo")] * 2  # gold, judge
    for seed in (0, 1):
        rm = directory / "rm" / f"seed_{seed}"
        ppo = json.loads((directory / "ppo" / f"seed_{seed}" / "summary.json").read_text())
        assert ppo["status"] == "finished" and os.path.samefile(ppo["reward_model"], rm)  # its seed's reward model
        results = json.loads((directory / "evaluate" / f"seed_{seed}" / "results.json").read_text())
        assert os.path.samefile(results["judge"]["run_dir"], rm) and results["seed"] == seed
    assert len(report["held_out"]) == 4  # PPO's start and final evaluation, per seed
    for name in ("report.md", "frontier.png", "scores.png", "differences.png"):
        assert (directory / name).is_file()
    assert (directory / "outputs" / "latest" / "ppo").is_symlink()  # the tournament's own pointers
    assert latest_links() == before  # the repository's outputs/latest untouched

    again = subprocess.run([sys.executable, "-m", "rlhf.tournament", "--resume", str(directory)], cwd=REPO,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("rm", "dpo", "ppo", "evaluate"):
        assert f"tournament: stage {stage}: every seed finished, skipped" in again.stdout
