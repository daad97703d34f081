"""Hydra callbacks (conf/hydra/default.yaml): an unwritable output folder is one error line before any job
runs; a sweep's exit status counts failed jobs, and a sweep stopped by a signal exits 128 + that signal."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


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
    permission): Hydra would otherwise fail with a traceback while making it. Tried in its nearest existing
    ancestor with a temporary folder, removed again, so nothing stays behind."""
    ancestor = Path(directory).absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        Path(tempfile.mkdtemp(prefix=".rlhf-write-check-", dir=ancestor)).rmdir()
    except OSError as err:
        print(
            f"error: cannot create {directory}: {err.strerror} ({err.filename or ancestor}); "
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


class ReportFailedJobs(Callback):
    """After a multirun: print how many jobs finished, failed or were stopped, and exit non-zero if any did not
    finish (the others still ran); 128 + the signal's number when a signal stopped the sweep."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
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
            sys.exit(next((jobs[n]["exit_code"] for n in stopped if jobs[n].get("exit_code")), 1))
        if failed:
            sys.exit(1)
