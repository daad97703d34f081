"""Run a tournament's stages in order, as subprocesses of this Python: print each command, skip what finished,
stop at the first stage that leaves a seed unfinished with a message that names the job, its error and how to
continue (``--resume``)."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
from pathlib import Path

from rlhf.errors import RlhfError
from rlhf.tournament.plan import (
    EVALUATE,
    FINISHED,
    RESULTS,
    Plan,
    aside_name,
    check_judges,
    job_state,
    stage_steps,
)


class StageFailed(RlhfError):
    """A stage ended with a seed that did not finish; the message says which, why and how to continue."""


def run_command(argv: list[str]) -> int:
    """Run ``argv`` to its end; its exit status. Ctrl-C reaches the child too (one process group) and the child
    stops cleanly at a checkpoint: wait for it rather than kill it. SIGTERM is passed on for the same reason."""
    process = subprocess.Popen(argv)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
    try:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                continue  # the child got the same SIGINT: let it save and stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def _why(run_dir: Path) -> str:
    """The first line of the error a job recorded, or what is missing."""
    summary = run_dir / "summary.json"
    if not run_dir.exists():
        return "never started"
    if not summary.is_file():
        return f"no {RESULTS}" if run_dir.parent.name == EVALUATE else "no summary.json (killed?)"
    data = json.loads(summary.read_text(encoding="utf-8"))
    error = (str(data.get("error") or "").strip().splitlines() or [""])[0]
    return f"{data.get('status')}: {error[:200]}" if error else str(data.get("status"))


def check_stage(plan: Plan, stage: str, exit_code: int) -> None:
    """Raise StageFailed unless every seed of ``stage`` finished (and its commands exited 0)."""
    unfinished = [s for s in plan.seeds if job_state(plan, stage, s) != FINISHED]
    if not unfinished and exit_code == 0:
        return
    jobs = "; ".join(f"{plan.job_dir(stage, s)}: {_why(plan.job_dir(stage, s))}" for s in unfinished)
    raise StageFailed(
        f"stage {stage} failed (exit {exit_code}){': ' + jobs if jobs else ''}. Fix the cause, then continue "
        f"(finished jobs are kept): python -m rlhf.tournament --resume {plan.directory}"
    )


def run_stages(plan: Plan, run=run_command, say=print) -> None:
    """Every stage of ``plan`` in order; what finished is skipped. ``run`` runs one command (tests replace it)."""
    for stage in plan.stages:
        if stage == EVALUATE:
            check_judges(plan)  # a judge that saw a compared method's pairs is refused before any evaluation
        steps = stage_steps(plan, stage)
        if not steps:
            say(f"tournament: stage {stage}: every seed finished, skipped", flush=True)
            continue
        worst = 0
        for step in steps:
            for old in step.set_aside:
                moved = aside_name(old)
                old.rename(moved)
                say(f"tournament: {old} stopped before a checkpoint; kept as {moved}, running it again", flush=True)
            seeds = ",".join(map(str, step.seeds))
            say(f"tournament: stage {stage}, seeds {seeds}:\n  {shlex.join(step.argv)}", flush=True)
            worst = worst or run(step.argv)
        check_stage(plan, stage, worst)
