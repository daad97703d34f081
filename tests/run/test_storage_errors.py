"""A full or read-only disk, or a file in the way, is one error line and a summary that says what happened,
never a traceback or a half-written file."""

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf.algos import rm
from rlhf.errors import StorageError
from rlhf.experiment import run_experiment
from rlhf.run import rundir
from tests.conftest import REPO, compose_train, tiny_overrides


def train(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "train.py", "debug=tiny", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def unwritable_roots(tmp_path) -> list[Path]:
    """Output roots that cannot be made: under a plain file, and under /sys where this machine forbids it."""
    (tmp_path / "a-file").write_text("not a directory")
    roots = [tmp_path / "a-file" / "outputs"]
    if not Path("/sys/rlhf-probe").exists():
        try:
            Path("/sys/rlhf-probe").mkdir()
            Path("/sys/rlhf-probe").rmdir()
        except OSError:
            roots.append(Path("/sys/rlhf-outputs"))
    return roots


def test_an_output_root_that_cannot_be_made_is_one_line(tmp_path):
    for root in unwritable_roots(tmp_path):
        result = train(f"outputs_root={root}")
        lines = error_lines(result)
        assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
        assert f"cannot create {root}/rm/" in lines[0] and "set outputs_root=" in lines[0]
        assert "Traceback" not in result.stderr


def test_a_latest_folder_that_cannot_be_written_is_one_line_after_a_finished_run(tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "latest").write_text("a file where the latest/ folder should be")
    result = train(f"outputs_root={outputs}", f"hydra.run.dir={tmp_path / 'run'}")
    lines = error_lines(result)
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert f"the run finished in {tmp_path / 'run'}, but {outputs / 'latest' / 'rm'} could not point at it" in lines[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and "latest_error" in summary
    assert "Traceback" not in result.stderr


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "/data/run/checkpoints/checkpoint-2/optimizer.pt")


def test_a_full_disk_while_training_fails_the_run_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(rm, "train", disk_full)
    with pytest.raises(StorageError, match=r"optimizer\.pt: No space left on device: the run stopped; free some"):
        run_experiment(compose_train(tiny_overrides(), outputs_root=tmp_path / "outputs"), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left on device" in summary["error"]


def test_a_full_disk_leaves_no_half_written_summary(tmp_path, monkeypatch):
    monkeypatch.setattr(rm, "train", disk_full)
    monkeypatch.setattr(rundir.os, "replace", disk_full)  # the summary cannot be written either
    with pytest.raises(StorageError):  # the error that stopped the run, not the summary's
        run_experiment(compose_train(tiny_overrides(), outputs_root=tmp_path / "outputs"), tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / "summary.json.tmp").exists()
