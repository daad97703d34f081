"""One owner per run directory: a second process (resume=, the same hydra.run.dir, resume=latest) is refused
with one line naming the owner's pid, and a SIGKILL never leaves a stale lock."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from rlhf.run.lock import RunDirLock, lock_holder
from rlhf.run.resume import latest_unfinished_run, rewrite_resume_args
from tests.conftest import REPO, compose_train, tiny_overrides

HOLD = (  # a process that owns a directory, as a live run does (the lock lives while `held` is referenced)
    "import sys, time; from rlhf.run.lock import RunDirLock; held = RunDirLock(sys.argv[1]).acquire(); "
    "print('held', flush=True); time.sleep(60)"
)


@pytest.fixture
def other_owner(tmp_path):
    """Start a process that owns a directory (as a live run does); yields (directory, process)."""
    processes = []

    def start(run_dir):
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout.readline().strip() == "held"
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()


def test_a_second_owner_is_refused_and_the_lock_dies_with_its_process(tmp_path, other_owner):
    owner = other_owner(tmp_path / "run")
    assert lock_holder(tmp_path / "run") == owner.pid
    with pytest.raises(ConfigError, match=rf"run is in use by a live run \(pid {owner.pid}\)"):
        RunDirLock(tmp_path / "run").acquire()
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert lock_holder(tmp_path / "run") is None  # the kernel dropped it: no stale lock
    with RunDirLock(tmp_path / "run"):
        assert lock_holder(tmp_path / "run") == os.getpid()
    assert lock_holder(tmp_path / "run") is None


def make_unfinished_run(root, name):
    """A run directory as a killed run leaves it: its config and a checkpoint, no summary."""
    run_dir = root / "rm" / name
    (run_dir / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    (run_dir / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors").write_bytes(b"")
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("algo: {name: rm}\n")
    return run_dir


def test_resume_of_a_live_run_is_refused_and_latest_skips_it(tmp_path, other_owner):
    outputs = tmp_path / "outputs"
    older, live = make_unfinished_run(outputs, "a"), make_unfinished_run(outputs, "b")
    time.sleep(0.01)
    os.utime(live / "checkpoints")  # the live one is the newest
    owner = other_owner(live)
    with pytest.raises(ConfigError, match=rf"is still running \(pid {owner.pid}\)"):
        rewrite_resume_args(["train.py", f"resume={live}", f"outputs_root={outputs}"])
    assert latest_unfinished_run(outputs, "rm") == older


def test_a_second_run_in_a_live_run_directory_writes_nothing(tmp_path, other_owner):
    run_dir = tmp_path / "run"
    owner = other_owner(run_dir)
    cfg = compose_train(tiny_overrides(), outputs_root=tmp_path / "outputs")
    with pytest.raises(ConfigError, match=rf"in use by a live run \(pid {owner.pid}\)"):
        run_experiment(cfg, run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # no config, metrics or summary of its own
