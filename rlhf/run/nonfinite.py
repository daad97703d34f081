"""Numeric failures: a NaN/inf loss, reward or gradient norm skips that update, is counted and logged.

``max_nonfinite_updates`` (conf/train.yaml) skipped updates in a row stop the run with a checkpoint of
the last good state and a :class:`NumericError`. One bad batch (an overflow, a corrupt example) should
not kill a long run, but a run that keeps producing NaNs has diverged and will not recover by itself.

    is_finite(*values)      True when no tensor or number holds a NaN or inf
    NonFiniteCounter        total and consecutive skips; says when patience is used up
    NonFiniteGuard          transformers Trainer callback (rm, sft, dpo): skips optimizer steps whose
                            gradients are not finite; the PPO loop (rlhf/algos/ppo/loop.py) checks its own
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from transformers import TrainerCallback

from rlhf.errors import NumericError

log = logging.getLogger(__name__)

SKIPPED_UPDATES = "nonfinite/skipped_updates"


def is_finite(*values) -> bool:
    """True when every tensor (any shape, any device) and every number is free of NaN and inf; None is ignored.

    Tensors are reduced on their device and read back once, so a check costs one synchronisation.
    """
    flags = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, torch.Tensor):
            if value.numel():
                flags.append(torch.isfinite(value).all())
        elif not math.isfinite(float(value)):
            return False
    if not flags:
        return True
    device = flags[0].device
    return bool(torch.stack([flag.to(device) for flag in flags]).all().item())


def numeric_error(consecutive: int, step: int, checkpoint_dir: Path | str, patience: int) -> NumericError:
    """The one-line error a run stops with: what happened, where the last good state is, and the fix."""
    return NumericError(
        f"{consecutive} updates in a row had a NaN/inf loss, reward or gradient norm (the last at step {step}), "
        f"so the run stopped; a checkpoint of the last good state is in {checkpoint_dir}. "
        "Fix: lower algo.learning_rate, "
        f"check the data and the reward model, or raise max_nonfinite_updates (now {patience})"
    )


class NonFiniteCounter:
    """Counts skipped updates: ``skipped`` in total, ``consecutive`` since the last good one.

    ``record(ok)`` after each update; it returns True once ``patience`` updates in a row were skipped
    (then ``exhausted`` stays True until a good update resets the streak).
    """

    def __init__(self, patience: int):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.skipped = 0
        self.consecutive = 0

    def record(self, ok: bool) -> bool:
        if ok:
            self.consecutive = 0
        else:
            self.skipped += 1
            self.consecutive += 1
        return self.exhausted

    @property
    def exhausted(self) -> bool:
        return self.consecutive >= self.patience


class NonFiniteGuard(TrainerCallback):
    """Skips a Trainer's optimizer step when a gradient holds a NaN or inf; stops after ``patience`` in a row.

    ``on_pre_optimizer_step`` runs after gradient clipping and right before ``optimizer.step()``
    (transformers 5.24, Trainer._inner_training_loop). A NaN/inf loss gives NaN gradients (clipping by
    an inf norm also turns inf entries into NaN), so checking the gradients covers the loss too.
    Skipping = setting every ``.grad`` to None: AdamW then leaves the parameters and its moments
    untouched; the scheduler still steps, so the schedule keeps its length.

    At patience it asks the Trainer to save a checkpoint (of the last good weights: skipped steps
    changed nothing) and stop; ``trainer.train()`` then returns normally, so call
    :meth:`raise_if_stopped` after it.
    """

    def __init__(self, tracker, patience: int):
        self.tracker = tracker
        self.counter = NonFiniteCounter(patience)
        self.stopped_at: int | None = None  # the step (1-based) at which patience ran out
        self.checkpoint_dir: str | None = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        ok = is_finite(*grads)
        if ok:
            self.counter.record(True)
            return control
        for p in model.parameters():
            p.grad = None
        step = state.global_step + 1  # the step this update would have made (the Trainer counts after it)
        self.counter.record(False)
        log.warning(
            "step %d: NaN/inf gradient, update skipped (%d in a row, %d in total)",
            step,
            self.counter.consecutive,
            self.counter.skipped,
        )
        self.tracker.log({SKIPPED_UPDATES: self.counter.skipped}, step=step)
        if self.counter.exhausted and self.stopped_at is None:
            self.stopped_at, self.checkpoint_dir = step, args.output_dir
            control.should_save = True
            control.should_training_stop = True
        return control

    def raise_if_stopped(self) -> None:
        """After ``trainer.train()``: raise the NumericError if the guard stopped the run."""
        if self.stopped_at is not None:
            raise numeric_error(self.counter.patience, self.stopped_at, self.checkpoint_dir, self.counter.patience)
