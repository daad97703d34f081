"""Resume after SIGKILL, clean stops on SIGTERM, and the resume= command line (real processes, tiny models)."""

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile

import pytest
import torch
from safetensors.torch import load_file

from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from rlhf.run.resume import rewrite_resume_args
from rlhf.run.rundir import complete_checkpoints
from tests.conftest import REPO, compose_train, tiny_overrides
from tests.planted_pickle import Payload

STEPS = {"algo.max_steps": "6", "algo.save_every": "2", "algo.keep_checkpoints": "2", "dataset.n_train": "24"}


def overrides(algo: str) -> list[str]:
    return [f"algo={algo}", *tiny_overrides(**STEPS)]


def run(args: list[str], module: list[str] = ("train.py",)) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *module, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def signalled_run(name: str, step: int, args: list[str]) -> subprocess.CompletedProcess:
    return run(args, module=["tests/signal_at_step.py", name, str(step)])


def train_rows(run_dir) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "loss" in r]


def adapter_weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


@pytest.fixture(params=["rm", "dpo"])
def algo(request):
    return request.param


def test_sigkill_then_resume_matches_an_uninterrupted_run(algo, tmp_path):
    outputs = tmp_path / "outputs"
    straight_dir = tmp_path / "straight"
    run_experiment(compose_train(overrides(algo), outputs_root=outputs), straight_dir)

    run_dir = tmp_path / "killed"
    args = [*overrides(algo), f"outputs_root={outputs}", f"hydra.run.dir={run_dir}"]
    killed = signalled_run("SIGKILL", 5, args)  # after step 5 was logged; the newest checkpoint is step 4
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert train_rows(run_dir) == [1, 2, 3, 4, 5] and not (run_dir / "summary.json").exists()

    resumed = run([f"resume={run_dir}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert train_rows(run_dir) == [1, 2, 3, 4, 5, 6]  # step 5 redone once, nothing missing
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["resumed"] is True
    expected, got = adapter_weights(straight_dir), adapter_weights(run_dir)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-5), name
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-4",
        "checkpoint-6",
    ]  # keep 2


def test_sigterm_saves_a_checkpoint_and_names_the_resume_command(tmp_path):
    run_dir = tmp_path / "stopped"
    args = [*overrides("rm"), f"outputs_root={tmp_path / 'outputs'}", f"hydra.run.dir={run_dir}"]
    stopped = signalled_run("SIGTERM", 3, args)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("stopped:")]
    assert len(lines) == 1 and f"resume with: python train.py resume={run_dir}" in lines[0], stopped.stderr[-2000:]
    # the signal came while step 3 was logged, so step 4 is the first to end after it: saved there,
    # off the save_every grid
    assert "stopped by SIGTERM after step 4" in lines[0] and "Traceback" not in stopped.stderr
    assert (run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert not (tmp_path / "outputs" / "latest").exists()

    resumed = run(["resume=latest", "algo=rm", f"outputs_root={tmp_path / 'outputs'}"], module=["train.py"])
    # resume=latest looks under outputs_root/<algo>, where this run is not: it says so
    assert resumed.returncode == 2 and "no unfinished run with a checkpoint" in resumed.stderr
    resumed = run([f"resume={run_dir}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert train_rows(run_dir) == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "outputs" / "latest" / "rm").resolve() == run_dir.resolve()


def test_ppo_sigkill_then_resume_reaches_the_last_step(tmp_path):
    outputs = tmp_path / "outputs"
    run_experiment(compose_train(tiny_overrides(), outputs_root=outputs), outputs / "rm" / "run")  # the reward model
    run_dir = tmp_path / "ppo"
    args = [
        *tiny_overrides(algo="ppo", **{"algo.iterations": "4", "algo.save_every": "2"}),
        f"outputs_root={outputs}",
        f"hydra.run.dir={run_dir}",
    ]
    killed = signalled_run("SIGKILL", 3, args)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    def steps():
        return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    assert steps() == [0, 1, 2, 3]
    resumed = run([f"resume={run_dir}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert steps() == [0, 1, 2, 3, 4]
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 4


# --------------------------------------------------------------------------- the resume= command line


def stopped_run(tmp_path, algo="rm", status="interrupted", checkpoint="checkpoint-2"):
    run_dir = tmp_path / "outputs" / algo / "2026-01-01_00-00-00_000000"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("algo: {name: rm}\n")
    if checkpoint:  # complete, as a resume needs it: trainer state and weights
        (run_dir / "checkpoints" / checkpoint).mkdir(parents=True)
        (run_dir / "checkpoints" / checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
        (run_dir / "checkpoints" / checkpoint / "adapter_model.safetensors").write_bytes(b"")
    if status:
        (run_dir / "summary.json").write_text(json.dumps({"status": status}))
    return run_dir


def test_without_resume_the_command_line_is_untouched():
    argv = ["train.py", "algo=dpo", "lora=r8"]
    assert rewrite_resume_args(argv) == argv and rewrite_resume_args(["train.py", "resume=null"]) == [
        "train.py",
        "resume=null",
    ]


def test_resume_loads_the_runs_saved_config_into_its_directory(tmp_path):
    run_dir = stopped_run(tmp_path).resolve()
    argv = rewrite_resume_args(["train.py", f"resume={run_dir}", "algo.max_steps=10"])
    assert argv == [
        "train.py",
        f"--config-path={run_dir / '.hydra'}",
        "--config-name=config",
        f"hydra.run.dir={run_dir}",
        "hydra.output_subdir=null",
        f"++resume={run_dir}",
        "algo.max_steps=10",
    ]


def test_resume_latest_picks_the_newest_unfinished_run_of_the_algorithm(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    older = stopped_run(tmp_path)
    newer = stopped_run(tmp_path / "b")  # another outputs root: not looked at
    assert newer != older
    assert f"hydra.run.dir={older.resolve()}" in rewrite_resume_args(["train.py", "resume=latest", "algo=rm"])
    finished = tmp_path / "outputs" / "dpo" / "x"
    (finished / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (finished / "summary.json").write_text(json.dumps({"status": "finished"}))
    with pytest.raises(ConfigError, match=r"resume=latest: no unfinished run with a checkpoint under outputs/dpo/"):
        rewrite_resume_args(["train.py", "resume=latest", "algo=dpo"])


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (lambda tmp: stopped_run(tmp, status="finished"), [], r"finished; nothing to resume"),
        (lambda tmp: stopped_run(tmp, checkpoint=None), [], r"has no checkpoint"),
        (lambda tmp: tmp / "nowhere", [], r"is not a train.py run directory"),
        (lambda tmp: stopped_run(tmp), ["lora=r8"], r"so lora=r8 cannot change it"),
        (lambda tmp: stopped_run(tmp), ["lora.r=8"], r"lora\.r=8 would change what the checkpoint holds"),
        (lambda tmp: stopped_run(tmp), ["model.tiny.hidden_size=32"], r"model\.tiny\.hidden_size=32 would change"),
        (lambda tmp: stopped_run(tmp), ["-m"], r"cannot be combined with -m"),
        (lambda tmp: stopped_run(tmp), ["algo=dpo"], r"that is an algo=rm run, so algo=dpo cannot apply to it"),
    ],
)
def test_bad_resume_targets_name_the_problem(tmp_path, make, extra, message):
    with pytest.raises(ConfigError, match=message):
        rewrite_resume_args(["train.py", f"resume={make(tmp_path)}", *extra])


def test_resume_with_the_runs_own_algo_goes_on(tmp_path):
    run_dir = stopped_run(tmp_path)
    assert f"hydra.run.dir={run_dir.resolve()}" in rewrite_resume_args(["train.py", f"resume={run_dir}", "algo=rm"])


def test_resuming_an_unwritable_run_directory_is_one_error_before_hydra(tmp_path, monkeypatch):
    # Hydra's file logging would fail first, with a traceback (the run directory is read-only: EROFS, as a
    # read-only mount gives even to root, who ignores file modes)
    run_dir = stopped_run(tmp_path)

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(ConfigError, match=rf"cannot write into {run_dir} \(Read-only file system"):
        rewrite_resume_args(["train.py", f"resume={run_dir}"])


def test_a_resumed_run_writes_only_into_its_own_directory(tmp_path):
    cfg = compose_train([*tiny_overrides(), f"resume={tmp_path / 'elsewhere'}"], outputs_root=tmp_path / "outputs")
    with pytest.raises(ConfigError, match=r"continues in its own directory"):
        run_experiment(cfg, tmp_path / "run")


def saved_state(run_dir) -> dict[str, str]:
    """What a failed resume must leave as it was: the saved config, the summary and the metrics."""
    return {name: (run_dir / name).read_text() for name in (".hydra/config.yaml", "summary.json", "metrics.jsonl")}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["lora.r=8"], "lora.r=8 would change what the checkpoint holds"),  # refused before Hydra runs
        (["algo.learning_rate=-1"], "algo.learning_rate=-1.0 is out of range"),  # fails before the checkpoint loads
    ],
)
def test_a_resume_that_fails_changes_nothing(tmp_path, extra, message):
    run_dir = tmp_path / "stopped"
    args = [*overrides("rm"), f"outputs_root={tmp_path / 'outputs'}", f"hydra.run.dir={run_dir}"]
    assert signalled_run("SIGTERM", 3, args).returncode == 128 + signal.SIGTERM
    before = saved_state(run_dir)

    failed = run([f"resume={run_dir}", *extra])
    lines = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert failed.returncode == 2 and len(lines) == 1 and message in lines[0], failed.stderr[-2000:]
    assert saved_state(run_dir) == before  # config still the run's, status still interrupted

    resumed = run([f"resume={run_dir}"])  # and a plain resume still works
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert train_rows(run_dir) == [1, 2, 3, 4, 5, 6]


def test_a_new_run_never_mixes_with_a_killed_runs_files(tmp_path):
    run_dir = tmp_path / "killed"
    (run_dir / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 0.7}\n')
    cfg = compose_train(tiny_overrides(), outputs_root=tmp_path / "outputs")
    with pytest.raises(ConfigError, match=r"already holds a run \(metrics.jsonl, checkpoints\) that did not finish"):
        run_experiment(cfg, run_dir)
    assert (run_dir / "metrics.jsonl").read_text() == '{"step": 1, "loss": 0.7}\n'


def test_a_planted_pickle_in_a_checkpoint_is_one_error_line(tmp_path):
    # was torch's UnpicklingError traceback, advising weights_only=False
    run_dir = tmp_path / "stopped"
    args = [*overrides("rm"), f"outputs_root={tmp_path / 'outputs'}", f"hydra.run.dir={run_dir}"]
    assert signalled_run("SIGTERM", 3, args).returncode == 128 + signal.SIGTERM
    planted = complete_checkpoints(run_dir)[-1] / "rng_state.pth"  # the one the resume loads
    torch.save({"python": Payload(tmp_path / "payload-ran")}, planted)
    before = saved_state(run_dir)
    failed = run([f"resume={run_dir}"])
    lines = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert failed.returncode == 2 and len(lines) == 1, failed.stderr[-2000:]
    assert lines[0].startswith(f"error: {planted} is not a checkpoint file this project wrote"), lines[0]
    assert "Traceback" not in failed.stderr and "weights_only" not in failed.stderr
    assert not (tmp_path / "payload-ran").exists() and saved_state(run_dir) == before
