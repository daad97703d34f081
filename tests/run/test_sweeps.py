"""Multirun on tiny models: every job writes its run directory, a failing job does not stop the others,
the sweep's exit status counts failures, and the compare report ranks the jobs."""

import json
import subprocess
import sys

from rlhf.report import collect_jobs, compare, rank_jobs
from tests.conftest import REPO

TINY = [
    "debug=tiny",
    "dataset.n_train=16",
    "dataset.n_test=8",
    "algo.max_steps=2",
]


def multirun(tmp_path, *overrides):
    sweep_dir = tmp_path / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            *TINY,
            f"hydra.sweep.dir={sweep_dir}",
            f"outputs_root={tmp_path}/outputs",
            *overrides,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result, sweep_dir


def test_dpo_grid_writes_four_jobs_and_the_report_ranks_them(tmp_path):
    result, sweep_dir = multirun(tmp_path, "algo=dpo", "algo.beta=0.05,0.3", "lora=r8,r16")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 of 4 jobs finished, 0 failed" in result.stdout
    summaries = [json.loads((sweep_dir / str(i) / "summary.json").read_text()) for i in range(4)]
    assert all(s["status"] == "finished" and "eval_accuracy" in s for s in summaries)

    table, plot = compare(sweep_dir)
    ranked = rank_jobs(collect_jobs(sweep_dir), "eval_accuracy")
    values = [job["summary"]["eval_accuracy"] for job in ranked]
    assert values == sorted(values, reverse=True)
    assert table.count("| finished |") == 4 and "algo.beta=0.05 lora=r8" in table
    assert (sweep_dir / "compare.md").is_file() and plot is not None and plot.is_file()


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path):
    result, sweep_dir = multirun(tmp_path, "algo=rm", "lora.r=4,0,8")
    assert result.returncode == 1
    assert "2 of 3 jobs finished, 1 failed (1)" in result.stdout
    failed = json.loads((sweep_dir / "1" / "summary.json").read_text())
    assert failed["status"] == "failed" and "lora.r=0" in failed["error"]
    for job in ("0", "2"):
        assert json.loads((sweep_dir / job / "summary.json").read_text())["status"] == "finished"
    table, _ = compare(sweep_dir)
    assert table.splitlines()[-1].startswith("| 3 | 1 |")  # the failed job ranks last
