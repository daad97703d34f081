"""Clean stops: SIGTERM / SIGINT ask the training loop to checkpoint and exit, instead of dying mid-step.

The handler only sets a flag; the loops (a Trainer callback, the PPO loop) look at it after each
optimizer step or iteration, save a checkpoint and raise :class:`Interrupted`, whose message says how
to resume. A second Ctrl-C while the first is being handled stops at once, as users expect.
"""

from __future__ import annotations

import shlex
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from transformers import TrainerCallback

from rlhf.errors import RlhfError
from rlhf.run import distributed


class Interrupted(RlhfError):
    """The run stopped on a signal after saving a checkpoint; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


class StopRequest:
    """Which signal asked the run to stop, if any (set from the signal handler)."""

    def __init__(self):
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def agreed(self) -> bool:
        """Whether the launch stops now: a signal reached this process or another one (each may see it at a
        different step); a process that did not see it stops as if SIGTERM had come. One process: ``requested``."""
        if distributed.any_rank(self.requested) and not self.requested:
            self.signal_number = signal.SIGTERM
        return self.requested

    def interrupted(self, run_dir: Path, step: int | None, checkpoint: Path | None) -> Interrupted:
        """The error a run stops with after ``step`` (None: before its first step, while loading)."""
        name = signal.Signals(self.signal_number).name
        if step is None:
            return Interrupted(
                f"stopped by {name} before the first training step (nothing was trained); start it again: "
                f"{resume_command(run_dir)} if it has a checkpoint, else the same command as before",
                self.signal_number,
            )
        saved = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint"
        return Interrupted(
            f"stopped by {name} after step {step}, {saved}; resume with: {resume_command(run_dir)}",
            self.signal_number,
        )


def resume_command(run_dir: Path) -> str:
    """The command that resumes ``run_dir``, quoted for the shell (a directory name may hold spaces or quotes)."""
    return f"python train.py resume={shlex.quote(str(run_dir))}"


_current: StopRequest | None = None


def current() -> StopRequest:
    """The stop request of the running job (a fresh, never-set one outside :func:`handle_stop_signals`)."""
    return _current if _current is not None else StopRequest()


@contextmanager
def handle_stop_signals():
    """Within the block, SIGTERM and SIGINT set the job's StopRequest instead of killing the process."""
    global _current
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():  # signal handlers need the main thread
        yield request
        return

    def on_signal(number, frame):
        if request.requested and number == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        request.signal_number = number

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    _current = request
    try:
        yield request
    finally:
        _current = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class StopOnSignal(TrainerCallback):
    """Makes a transformers Trainer save a checkpoint and stop after the step in which a signal came."""

    def __init__(self, request: StopRequest):
        self.request = request

    def on_step_end(self, args, state, control, **kwargs):
        if self.request.agreed():  # every process stops after the same step
            control.should_save = True
            control.should_training_stop = True
        return control
