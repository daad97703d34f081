"""The reward model and the sentinel's judge a run scores with, pinned when it starts.

With ``algo.reward_model: null`` a run finds its reward model at <outputs_root>/latest/rm, and the sentinel's
``auto`` judge at latest/judge: a resume after a newer rm run would follow the pointer, train the rest of the run
against another reward model and report a gain between a start score of the old one and a final score of the
new one. So a new run records each one's run directory and adapter sha256 in run_dir/scorers.json, and a resume
that resolves another one (other weights; the same weights at another path pass) refuses in one line that names
both.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlhf.errors import ConfigError
from rlhf.modeling.fingerprints import adapter_fingerprint
from rlhf.run.job import Job
from rlhf.run.rundir import FinishedRun, write_json_atomic

SCORERS = "scorers.json"


def scorer_record(run: FinishedRun | None) -> dict | None:
    """A scorer's run directory and adapter sha256; None for the gold judge (code, nothing to fingerprint)."""
    return None if run is None else {"path": str(run.run_dir), "sha256": adapter_fingerprint(run.adapter)}


def _describe(record: dict | None) -> str:
    return "the gold judge" if record is None else f"{record['path']} (sha256 {record['sha256'][:12]})"


def _still_there(record: dict | None) -> bool:
    try:
        return record is None or adapter_fingerprint(Path(record["path"]) / "adapter") == record["sha256"]
    except FileNotFoundError:
        return False


def pin_scorers(job: Job, scorers: dict[str, FinishedRun | None]) -> None:
    """A new run records ``scorers`` (config key -> the run it resolved to); a resumed one checks each against
    what it recorded (a run from before scorers.json: nothing to compare)."""
    now = {key: scorer_record(run) for key, run in scorers.items()}
    path = job.run_dir / SCORERS
    if not job.resume:
        if job.writes:
            write_json_atomic(path, now)
        return
    if not path.is_file():
        return
    pinned = json.loads(path.read_text(encoding="utf-8"))
    for key, record in now.items():
        if key not in pinned or (record and record["sha256"]) == (pinned[key] and pinned[key]["sha256"]):
            continue
        then = pinned[key]
        fix = (
            f"resume with {key}={then['path'] if then else 'auto'}"
            if _still_there(then)
            else "put it back and resume, or start a new run"
        )
        raise ConfigError(
            f"resume={job.run_dir}: {key} now gives {_describe(record)}, not {_describe(then)}, which the run "
            f"started with (outputs_root/latest moved on to a newer run?); {fix}"
        )
