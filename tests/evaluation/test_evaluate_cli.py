"""evaluate.py as a user runs it: bad input gives one `error:` line on stderr, exit code 2, no traceback;
the slow tests run train.py (rm, dpo, ppo, grpo, rloo) on the tiny model, then evaluate.py with its defaults
(base, dpo, ppo) and with +policies.grpo=... +policies.rloo=... beside them."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.evaluation.helpers import make_rm_run


def run_evaluate(tmp_path, *overrides, timeout=300, outputs=None):
    """evaluate.py debug=tiny into tmp_path/eval, on the runs of ``outputs`` (default tmp_path/outputs)."""
    return subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            "debug=tiny",
            f"hydra.run.dir={tmp_path}/eval",
            f"outputs_root={outputs or tmp_path / 'outputs'}",
            *overrides,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    "make_overrides, expected",
    [
        (
            lambda tmp: [f"policies.dpo={(tmp / 'plain').mkdir() or tmp / 'plain'}"],
            "policies.dpo={tmp}/plain: not a run directory (no summary.json)",
        ),
        (
            lambda tmp: [f"judge={make_rm_run(tmp / 'rm', model='smollm2_135m', with_weights=False)}"],
            "judge={tmp}/rm: that run trained on model=smollm2_135m, a different base from model=tiny_llama; "
            "pick an rm run on tiny_llama",
        ),
        (lambda tmp: ["evaluation.n_prompts=0"], "evaluation.n_prompts=0 is out of range: must be >= 1"),
        (
            lambda tmp: [f"policies.dpo={tmp}/outputs/latest/dpo"],
            "policies.dpo={tmp}/outputs/latest/dpo: nothing is there",
        ),
    ],
    ids=["not-a-run-dir", "judge-on-another-base", "empty-prompt-set", "explicit-missing-latest"],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, make_overrides, expected):
    make_rm_run(tmp_path / "outputs" / "rm" / "x", with_weights=False)
    (tmp_path / "outputs" / "latest").mkdir(parents=True)
    (tmp_path / "outputs" / "latest" / "rm").symlink_to(tmp_path / "outputs" / "rm" / "x")
    result = run_evaluate(tmp_path, *make_overrides(tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = error_lines(result)
    assert len(lines) == 1 and expected.format(tmp=tmp_path) in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """rm, dpo, ppo, grpo and rloo trained on the tiny model into one outputs_root (outputs/latest/<algo>)."""
    root = tmp_path_factory.mktemp("trained")
    common = ["debug=tiny", f"outputs_root={root}/outputs"]
    for algo in ("rm", "dpo", "ppo", "grpo", "rloo"):
        done = subprocess.run(
            [sys.executable, "train.py", f"algo={algo}", f"hydra.run.dir={root}/{algo}", *common],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    return root


SHRUNK = ("dataset.n_test=16", "evaluation.n_prompts=8", "evaluation.n_pairs=8", "evaluation.sampling.max_new_tokens=8")


def evaluate_trained(root, tmp_path, *overrides):
    """evaluate.py on ``root``'s runs into tmp_path/eval (the runs stay where they were trained)."""
    return run_evaluate(tmp_path, *SHRUNK, *overrides, timeout=600, outputs=root / "outputs")


@pytest.mark.slow
def test_defaults_after_rm_dpo_ppo_runs(trained, tmp_path):
    result = evaluate_trained(trained, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert list(res["policies"]) == ["base", "dpo", "ppo"]  # grpo and rloo only when asked for
    assert res["policies"]["dpo"]["run_dir"] == str((trained / "dpo").resolve())
    assert "| Method | Avg Reward | Accuracy | Notes |" in result.stdout
    for name in ("results.md", "scores.png", "reward_vs_kl.png", "training_curves.png"):
        assert (tmp_path / "eval" / name).is_file()


@pytest.mark.slow
def test_grpo_and_rloo_beside_base_dpo_and_ppo(trained, tmp_path):
    outputs = trained / "outputs"
    result = evaluate_trained(
        trained, tmp_path, f"+policies.grpo={outputs}/latest/grpo", f"+policies.rloo={outputs}/latest/rloo"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    names = ["base", "dpo", "ppo", "grpo", "rloo"]  # in config order in results.md; results.json sorts its keys
    assert sorted(res["policies"]) == sorted(names)
    for algo in ("grpo", "rloo"):
        p = res["policies"][algo]
        assert p["algo"] == algo and p["run_dir"] == str((trained / algo).resolve()) and p["reference"] == "base"
        assert p["accuracy_kind"] == "implicit reward" and "gold_delta_vs_base" in p
    headline = result.stdout.split("| Method | Avg Reward | Accuracy | Notes |")[1]
    assert [line.split(" | ")[0].strip("| ") for line in headline.splitlines()[2:7]] == names
    assert res["plots"] == ["scores.png", "reward_vs_kl.png", "training_curves.png"]
    samples = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    assert all({"grpo", "rloo"} <= set(s) for s in samples)
