"""Signals at any moment: before the first training step (while loading) and in the middle of a -m sweep,
a run stops with one line, `interrupted` in its summary and exit 128 + signal, never a traceback."""

import json
import shlex
import signal
import subprocess
import sys

from rlhf.run.stopping import StopRequest
from tests.conftest import REPO


def signalled(tmp_path, signal_spec: str, step: int, *args: str, multirun: bool = False) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "tests/signal_at_step.py",
        signal_spec,
        str(step),
        *(["-m"] if multirun else []),
        "debug=tiny",
    ]
    command += args
    return subprocess.run(
        [*command, f"outputs_root={tmp_path / 'outputs'}"], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_sigterm_while_loading_stops_before_the_first_step(tmp_path):
    run_dir = tmp_path / "run"
    result = signalled(tmp_path, "SIGTERM", 0, "algo=rm", f"hydra.run.dir={run_dir}")
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-2000:]
    stopped = [line for line in result.stderr.splitlines() if line.startswith("stopped:")]
    assert len(stopped) == 1 and "before the first training step" in stopped[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["exit_code"] == 143
    assert not (run_dir / "metrics.jsonl").exists() or "loss" not in (run_dir / "metrics.jsonl").read_text()


def test_a_double_ctrl_c_while_loading_is_recorded_as_interrupted(tmp_path):
    run_dir = tmp_path / "run"
    result = signalled(tmp_path, "SIGINTx2", 0, "algo=dpo", f"hydra.run.dir={run_dir}")
    assert result.returncode == 128 + signal.SIGINT, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr
    stopped = [line for line in result.stderr.splitlines() if line.startswith("stopped:")]
    assert len(stopped) == 1 and "second Ctrl-C" in stopped[0], result.stderr[-2000:]
    # before its first checkpoint: it printed "resume with:", a resume the run then refused
    assert "nothing can be resumed" in stopped[0] and "resume with" not in stopped[0], stopped[0]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"


def test_the_resume_hint_is_quoted_for_the_shell(tmp_path):
    request = StopRequest()
    request.signal_number = signal.SIGTERM
    run_dir = tmp_path / "my run's dir"
    hint = str(request.interrupted(run_dir, 3, None))
    assert shlex.split(hint.split("resume with: ")[1]) == ["python", "train.py", f"resume={run_dir}"], hint


def test_sigterm_in_a_sweep_stops_it_after_the_current_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = signalled(tmp_path, "SIGTERM", 2, "algo=rm", "seed=1,2,3", f"hydra.sweep.dir={sweep_dir}", multirun=True)
    assert result.returncode == 128 + signal.SIGTERM, result.stdout[-2000:] + result.stderr[-2000:]
    assert json.loads((sweep_dir / "0" / "summary.json").read_text())["status"] == "interrupted"
    assert not (sweep_dir / "1" / "summary.json").exists() and not (sweep_dir / "2" / "summary.json").exists()
    assert "0 of 3 jobs finished, 0 failed; stopped by a signal in job 0, 2 not started" in result.stdout
    assert "Traceback" not in result.stderr
