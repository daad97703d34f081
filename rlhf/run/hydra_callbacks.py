"""Hydra callbacks (conf/hydra/default.yaml): an unwritable output folder is one error line before any job
runs; a sweep's exit status counts failed jobs, and a sweep stopped by a signal exits 128 + that signal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rlhf.run.rundir import write_probe


def sweep_job_statuses(sweep_dir: Path) -> dict[str, dict]:
    """job directory name -> its summary.json ({"status": "missing"} when the job wrote none: not started,
    or killed before it could)."""
    jobs = {}
    for job_dir in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
        summary = job_dir / "summary.json"
        jobs[job_dir.name] = json.loads(summary.read_text()) if summary.is_file() else {"status": "missing"}
    return jobs


def check_writable(directory: Path) -> None:
    """Exit with one error line if ``directory`` cannot be created (a read-only disk, a file in the way, no
    permission): Hydra would otherwise fail with a traceback while making it (rundir.write_probe)."""
    err = write_probe(directory)
    if err is not None:
        print(
            f"error: cannot create {directory}: {err.strerror} ({err.filename}); "
            "set outputs_root=<a writable directory> (or hydra.run.dir / hydra.sweep.dir)",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(2)


class CheckOutputDirectory(Callback):
    """Before a run or a sweep: its output folder can be made."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable(Path(config.hydra.sweep.dir))


def report_sweep(sweep_dir: Path) -> int:
    """Print ``sweep DIR: N of M jobs finished, K failed`` (and which ones) and return the sweep's exit status:
    0 when every job finished, 1 when any failed, 128 + the signal's number when a signal stopped the sweep."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return 0
    jobs = sweep_job_statuses(sweep_dir)
    by_status = {status: sorted(n for n, s in jobs.items() if s["status"] == status) for status in
                 ("finished", "failed", "interrupted", "missing")}  # fmt: skip
    stopped = by_status["interrupted"]
    # Without a signal, a job without a summary was killed: a failure. After one, it never started.
    failed = sorted(
        set(jobs) - set(by_status["finished"]) - set(stopped) - set(by_status["missing"] if stopped else ())
    )
    line = f"sweep {sweep_dir}: {len(by_status['finished'])} of {len(jobs)} jobs finished, {len(failed)} failed"
    line += f" ({', '.join(failed)})" if failed else ""
    if stopped:
        line += f"; stopped by a signal in job {', '.join(stopped)}, {len(by_status['missing'])} not started"
    print(line, flush=True)
    if stopped:
        return next((jobs[n]["exit_code"] for n in stopped if jobs[n].get("exit_code")), 1)
    return 1 if failed else 0


# The sweep this process started and has not reported yet: Hydra calls on_multirun_end only when the sweeper
# returns, so train.py reports a sweep whose sweeper raised (report_unfinished_sweep).
_unreported_sweep: Path | None = None


def report_unfinished_sweep() -> int | None:
    """Report a sweep that started but never reached on_multirun_end; its exit status, None if there is none."""
    global _unreported_sweep
    sweep_dir, _unreported_sweep = _unreported_sweep, None
    return None if sweep_dir is None else report_sweep(sweep_dir)


class ReportFailedJobs(Callback):
    """After a multirun: print how many jobs finished, failed or were stopped, and exit non-zero if any did not
    finish (the others still ran); 128 + the signal's number when a signal stopped the sweep."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _unreported_sweep
        _unreported_sweep = Path(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _unreported_sweep
        _unreported_sweep = None
        code = report_sweep(Path(config.hydra.sweep.dir))
        if code:
            sys.exit(code)
