"""Run a transformers/TRL Trainer the way every run needs: resumable, stoppable by signal, guarded
against NaN/inf updates.

Checkpoints are the Trainer's own (run_dir/checkpoints/checkpoint-<step>/: adapter, optimizer,
scheduler, RNG states, data position), written every ``algo.save_every`` steps and rotated to the
newest ``algo.keep_checkpoints``. Resuming loads the newest one and drops the metrics.jsonl rows
logged after it, so the file has every step once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint

from rlhf.errors import ConfigError
from rlhf.run import stopping
from rlhf.run.job import Job
from rlhf.run.nonfinite import NonFiniteGuard
from rlhf.run.rundir import CHECKPOINTS, truncate_metrics

log = logging.getLogger(__name__)


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest Trainer checkpoint in ``run_dir/checkpoints``, or None."""
    root = Path(run_dir) / CHECKPOINTS
    found = get_last_checkpoint(str(root)) if root.is_dir() else None
    return Path(found) if found else None


def checkpoint_step(checkpoint: Path) -> int:
    return int(json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])


def run_trainer(trainer: Trainer, job: Job) -> int:
    """``trainer.train()``, continued from the run's newest checkpoint when the job resumes; returns the
    final global step. A SIGTERM / SIGINT during training saves a checkpoint and raises Interrupted;
    NaN/inf gradients skip their update, and ``job.max_nonfinite_updates`` in a row save and raise NumericError."""
    resume_from = None
    if job.resume:
        resume_from = last_checkpoint(job.run_dir)
        if resume_from is None:
            raise ConfigError(
                f"resume={job.run_dir}: no checkpoint in {job.run_dir / CHECKPOINTS}; start the run afresh"
            )
        step = checkpoint_step(resume_from)
        dropped = truncate_metrics(job.tracker.metrics_path, step)
        log.info("resuming from %s (step %d); dropped %d metric rows logged after it", resume_from, step, dropped)
    stop = stopping.current()
    guard = NonFiniteGuard(job.tracker, job.max_nonfinite_updates)
    trainer.add_callback(stopping.StopOnSignal(stop))
    trainer.add_callback(guard)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    guard.raise_if_stopped()
    if stop.requested:
        raise stop.interrupted(job.run_dir, trainer.state.global_step, last_checkpoint(job.run_dir))
    return trainer.state.global_step
