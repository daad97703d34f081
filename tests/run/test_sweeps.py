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


# The Optuna preset on three trials; TPE's seeded random start-up draws lora.r = 0, 4, 4 from choice(0,4) with
# seed=42, so exactly the first trial fails (lora.r=0 is a ConfigError inside the job).
OPTUNA_ONE_FAILING = ["sweep=optuna_dpo", "seed=42", "hydra.sweeper.n_trials=3", "lora.r=choice(0,4)"]


def job_statuses(sweep_dir, n_jobs):
    """Each job's summary.json status and error, by job number."""
    summaries = [json.loads((sweep_dir / str(i) / "summary.json").read_text()) for i in range(n_jobs)]
    return [(s["status"], s.get("error")) for s in summaries]


def assert_study_ran_on_past_its_failed_trial(result, sweep_dir):
    """The failed trial was told to Optuna as failed, the other two finished, the study reached its end."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "2 of 3 jobs finished, 1 failed (0)" in result.stdout, output[-3000:]
    statuses = job_statuses(sweep_dir, 3)
    assert statuses[0][0] == "failed" and "lora.r=0" in statuses[0][1]
    assert [s for s, _ in statuses[1:]] == ["finished", "finished"]
    assert output.count("Failed experiment: Return value must be float-castable") == 1  # Optuna's FAIL mark
    assert "lora.r: 4" in (sweep_dir / "optimization_results.yaml").read_text()  # the best of the two finished


def test_an_optuna_study_marks_a_failed_trial_failed_and_runs_the_others(tmp_path):
    result, sweep_dir = multirun(tmp_path, *OPTUNA_ONE_FAILING)
    assert_study_ran_on_past_its_failed_trial(result, sweep_dir)


def test_an_optuna_study_whose_trials_all_fail_still_counts_them(tmp_path):
    # Optuna then has no best trial and the sweeper raises before Hydra's end-of-sweep callback.
    result, sweep_dir = multirun(tmp_path, "sweep=optuna_dpo", "hydra.sweeper.n_trials=2", "lora.r=0")
    assert result.returncode == 1, (result.stdout + result.stderr)[-3000:]
    assert "0 of 2 jobs finished, 2 failed (0, 1)" in result.stdout
    assert [s for s, _ in job_statuses(sweep_dir, 2)] == ["failed", "failed"]


def test_submitit_local_records_a_failed_optuna_trial_and_runs_the_others(tmp_path):
    # Each job runs in its own process; its return value comes back to the sweeper through submitit.
    result, sweep_dir = multirun(tmp_path, "hydra/launcher=submitit_local", *OPTUNA_ONE_FAILING)
    assert_study_ran_on_past_its_failed_trial(result, sweep_dir)
    assert (sweep_dir / ".submitit").is_dir()  # the jobs did go through submitit


def composed_sweeper(*overrides):
    """train.py's own composition of the Optuna preset's hydra.sweeper node, resolved: (exit status, output)."""
    result = subprocess.run(
        [sys.executable, "train.py", "sweep=optuna_dpo", *TINY, *overrides, "--cfg", "all", "--resolve"]
        + ["--package", "hydra.sweeper"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode, result.stdout + result.stderr


def test_the_optuna_preset_takes_its_direction_from_the_metric():
    for overrides, expected in [
        ((), "direction: maximize"),  # the preset's eval_accuracy
        (("optimized_metric=eval_loss",), "direction: minimize"),
        (("optimized_metric=eval_loss", "hydra.sweeper.direction=maximize"), "direction: maximize"),  # said
    ]:
        code, output = composed_sweeper(*overrides)
        assert code == 0 and expected in output.splitlines(), (overrides, output[-2000:])


def test_an_optuna_metric_of_unknown_direction_is_one_error_line():
    code, output = composed_sweeper("optimized_metric=eval_mystery")
    assert code == 2
    assert "error: cannot tell whether 'eval_mystery' is better high or low" in output
    assert "hydra.sweeper.direction=minimize|maximize" in output and "Traceback" not in output
