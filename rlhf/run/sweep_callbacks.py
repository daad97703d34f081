"""Hydra callbacks for multirun sweeps: count failed jobs and make the sweep's exit status say so."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def sweep_job_statuses(sweep_dir: Path) -> dict[str, str]:
    """job directory name -> status from its summary.json ('missing' when the job wrote none)."""
    statuses = {}
    for job_dir in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
        summary = job_dir / "summary.json"
        statuses[job_dir.name] = json.loads(summary.read_text())["status"] if summary.is_file() else "missing"
    return statuses


class ReportFailedJobs(Callback):
    """After a multirun: print how many jobs failed and exit non-zero if any did (the others still ran)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        statuses = sweep_job_statuses(sweep_dir)
        failed = sorted(name for name, status in statuses.items() if status != "finished")
        print(
            f"sweep {sweep_dir}: {len(statuses) - len(failed)} of {len(statuses)} jobs finished, {len(failed)} failed"
            + (f" ({', '.join(failed)})" if failed else ""),
            flush=True,
        )
        if failed:
            sys.exit(1)
