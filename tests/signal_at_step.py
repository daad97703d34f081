"""`python tests/signal_at_step.py SIGNAL STEP <train.py args>`: run train.py and send this process SIGNAL
right after the metrics of training step STEP are logged: a real kill (or stop request) at a known point."""

import os
import runpy
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rlhf.run.tracking import Tracker  # noqa: E402  (after the path is set)


def main() -> None:
    number = signal.Signals[sys.argv.pop(1)]
    at_step = int(sys.argv.pop(1))
    real_log = Tracker.log
    sent = []

    def log_then_signal(self, metrics, step):
        real_log(self, metrics, step)
        if step >= at_step and not sent:
            sent.append(step)
            os.kill(os.getpid(), number)

    Tracker.log = log_then_signal
    sys.argv[0] = str(REPO / "train.py")
    runpy.run_path(sys.argv[0], run_name="__main__")  # as `python train.py`: Hydra finds conf/ beside it


if __name__ == "__main__":
    main()
