"""`python tests/signal_at_step.py SIGNAL[xN] STEP <train.py args>`: run train.py and send this process SIGNAL
(N times, e.g. SIGINTx2 for a double Ctrl-C) right after the metrics of training step STEP are logged, or with
STEP 0 while the run is still loading (right after its data is read): a real kill or stop request at a known
point."""

import os
import runpy
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rlhf.run import job  # noqa: E402  (after the path is set)
from rlhf.run.tracking import Tracker  # noqa: E402


def main() -> None:
    name, _, times = sys.argv.pop(1).partition("x")
    number, count = signal.Signals[name], int(times or 1)
    at_step = int(sys.argv.pop(1))
    sent = []

    def send() -> None:
        if not sent:
            sent.append(True)
            for _ in range(count):
                os.kill(os.getpid(), number)

    if at_step == 0:
        real_load = job.load_preference_splits

        def load_then_signal(*args, **kwargs):
            data = real_load(*args, **kwargs)
            send()
            return data

        job.load_preference_splits = load_then_signal
    else:
        real_log = Tracker.log

        def log_then_signal(self, metrics, step):
            real_log(self, metrics, step)
            if step >= at_step:
                send()

        Tracker.log = log_then_signal
    sys.argv[0] = str(REPO / "train.py")
    runpy.run_path(sys.argv[0], run_name="__main__")  # as `python train.py`: Hydra finds conf/ beside it


if __name__ == "__main__":
    main()
