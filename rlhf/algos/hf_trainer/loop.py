"""Run a transformers/TRL Trainer the way every run needs: resumable, stoppable by signal, guarded
against NaN/inf updates.

Checkpoints are the Trainer's own (run_dir/checkpoints/checkpoint-<step>/: adapter, optimizer,
scheduler, RNG states, data position), written every ``algo.save_every`` steps and rotated to the
newest ``algo.keep_checkpoints``; each is written in a staging folder and renamed into place when
complete (rlhf/algos/hf_trainer/checkpoints.py). Resuming loads the newest complete one and, once it is
loaded, tells the job (``Job.resumed_from``: metrics.jsonl loses the rows logged after it, so the file has
every step once); a checkpoint at the run's last step is only loaded, not trained on.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from transformers import Trainer, TrainerCallback, TrainerState
from transformers.trainer_pt_utils import safe_globals

from rlhf.algos.hf_trainer.checkpoints import logged_rows, make_checkpoints_atomic
from rlhf.algos.hf_trainer.cost_tracking import track_costs
from rlhf.errors import ConfigError
from rlhf.run import costs, stopping
from rlhf.run.job import Job
from rlhf.run.nonfinite import NonFiniteGuard
from rlhf.run.rundir import CHECKPOINTS, TRAINER_STATE, checkpoint_folders, complete_checkpoints, is_complete
from rlhf.run.safe_load import refuse_unsafe_pickles

log = logging.getLogger(__name__)


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete Trainer checkpoint in ``run_dir/checkpoints``, or None."""
    complete = complete_checkpoints(run_dir)
    return complete[-1] if complete else None


def checkpoint_state(checkpoint: Path) -> dict:
    """The checkpoint's trainer_state.json."""
    return json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))


def resume_point(run_dir: Path) -> tuple[Path, list[Path]]:
    """The newest complete checkpoint, and the incomplete checkpoint-N folders (a save killed half way, from
    before saves were atomic), named in one log line. :func:`resumed` removes those once the checkpoint is
    loaded: none can be loaded, and left in place each would take one of the ``algo.keep_checkpoints``
    places in the rotation, at the cost of a complete checkpoint."""
    newest = last_checkpoint(run_dir)
    incomplete = [p for p in checkpoint_folders(run_dir) if not is_complete(p)]
    names = ", ".join(p.name for p in incomplete)
    if newest is None:
        found = f" ({names}: incomplete)" if incomplete else ""
        raise ConfigError(
            f"resume={run_dir}: no complete checkpoint in {run_dir / CHECKPOINTS}{found}; start the run afresh"
        )
    if incomplete:
        log.warning(
            "skipping incomplete checkpoint %s (no readable trainer_state.json or no weights: a save cut short); "
            "resuming from %s, and removing it once that is loaded",
            names,
            newest.name,
        )
    return newest, incomplete


def resumed(job: Job, checkpoint: Path, step: int, incomplete: list[Path]) -> None:
    """The ``checkpoint`` of ``step`` is loaded: only now does the run directory follow it (Job.resumed_from),
    so a resume that fails before changes nothing."""
    for folder in incomplete:
        shutil.rmtree(folder, ignore_errors=True)
    job.resumed_from(step, logged_rows(checkpoint))
    costs.carry(checkpoint)  # later checkpoints' costs count from the run's first step


class OnTrainBegin(TrainerCallback):
    """Calls ``action`` when the Trainer begins training: a resumed one has loaded its checkpoint's weights,
    optimizer, scheduler and state by then, and logged nothing yet."""

    def __init__(self, action: Callable[[], None]):
        self.action = action

    def on_train_begin(self, args, state, control, **kwargs):
        self.action()


def planned_steps(trainer: Trainer, state: dict) -> int:
    """The step the run trains to: ``algo.max_steps`` (so a resume that raises it trains on), or for an
    epoch-based run (max_steps=-1) the total the checkpoint recorded."""
    return trainer.args.max_steps if trainer.args.max_steps > 0 else int(state["max_steps"])


def load_without_training(trainer: Trainer, checkpoint: Path) -> None:
    """Give ``trainer`` the checkpoint's weights (PEFT adapters included) and state, as a resumed
    ``trainer.train`` would, without training: ``trainer.train`` on its last step would train one more."""
    trainer._load_from_checkpoint(str(checkpoint))
    trainer.state = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE))


def run_trainer(trainer: Trainer, job: Job) -> int:
    """``trainer.train()``, continued from the run's newest complete checkpoint when the job resumes (only
    loaded, not trained on, when it is at the run's last step); returns the final global step (also
    ``trainer.state.global_step``). A SIGTERM / SIGINT during training saves a checkpoint and raises
    Interrupted; NaN/inf gradients skip their update, and ``job.max_nonfinite_updates`` in a row save and
    raise NumericError. Its phase seconds and token counts go to this run's accumulator (cost_tracking.py)."""
    make_checkpoints_atomic(trainer, job.tracker.metrics_path)
    resume_from = None
    if job.resume:
        resume_from, incomplete = resume_point(job.run_dir)
        refuse_unsafe_pickles(resume_from, safe_globals)  # one line, not torch's traceback (rlhf/run/safe_load.py)
        state = checkpoint_state(resume_from)
        step, planned = int(state["global_step"]), planned_steps(trainer, state)
        log.info("resuming from %s (step %d of %d)", resume_from, step, planned)
        if step >= planned:
            log.info("training had ended at step %d: loading %s without training", step, resume_from.name)
            with costs.phase("checkpoint"):
                load_without_training(trainer, resume_from)
            resumed(job, resume_from, step, incomplete)
            return trainer.state.global_step
        trainer.add_callback(OnTrainBegin(lambda: resumed(job, resume_from, step, incomplete)))
    stop = stopping.current()
    guard = NonFiniteGuard(job.tracker, job.max_nonfinite_updates)
    trainer.add_callback(stopping.StopOnSignal(stop))
    trainer.add_callback(guard)
    track_costs(trainer)
    with costs.phase("training"):
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    costs.sum_counts_over_ranks()  # every process returns from train() at the same step
    guard.raise_if_stopped()
    if stop.requested:
        raise stop.interrupted(job.run_dir, trainer.state.global_step, last_checkpoint(job.run_dir))
    return trainer.state.global_step
