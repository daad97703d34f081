"""Time every optimizer step of a transformers / TRL Trainer into a JSON file.

    python -m bench.steptimer STEPS.json [train.py overrides...]    # train.py, unchanged, with the timer on

Run as a script it adds :class:`StepTimer` to every Trainer the process builds (a patched
``Trainer.__init__``: nothing in rlhf/ changes) and runs train.py as ``__main__``. bench/direct_trl.py
passes the same callback to TRL directly, so both sides are timed by the same code.

The file holds ``step_s`` (seconds between consecutive ``on_step_end`` calls, the first from
``on_train_begin``: data loading, forward, backward, optimizer, logging), the cumulative ``num_tokens``
TRL logs per step (non-padding tokens fed to the model), and ``train_peak_rss_mb`` (peak RSS when
training ended, before any evaluation after it).
"""

from __future__ import annotations

import json
import resource
import runpy
import sys
import time
from pathlib import Path

from transformers import Trainer, TrainerCallback

REPO = Path(__file__).resolve().parents[1]


class StepTimer(TrainerCallback):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.last = None
        self.step_s: list[float] = []
        self.num_tokens: dict[int, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.step_s.append(now - self.last)
        self.last = now

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "num_tokens" in logs:
            self.num_tokens[state.global_step] = float(logs["num_tokens"])

    def on_train_end(self, args, state, control, **kwargs):
        record = {
            "step_s": self.step_s,
            "num_tokens": self.num_tokens,
            "train_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        self.path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def install(path: str | Path) -> None:
    """Add a StepTimer writing to ``path`` to every Trainer built from now on in this process."""
    original = Trainer.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.add_callback(StepTimer(path))

    Trainer.__init__ = __init__


def per_step(record: dict, skip: int = 1) -> dict:
    """Seconds and tokens per step after the first ``skip`` (warm-up) steps."""
    times = record["step_s"][skip:]
    tokens = {int(k): v for k, v in record["num_tokens"].items()}
    counted = sorted(s for s in tokens if s > skip)
    per_step_tokens = None
    if counted and skip in tokens:
        per_step_tokens = (tokens[counted[-1]] - tokens[skip]) / (counted[-1] - skip)
    elif counted:
        per_step_tokens = tokens[counted[-1]] / counted[-1]
    return {"step_s": times, "tokens_per_step": per_step_tokens}


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__.splitlines()[2].strip())
    install(sys.argv[1])
    train_py = str(REPO / "train.py")
    sys.argv = [train_py, *sys.argv[2:]]
    runpy.run_path(train_py, run_name="__main__")
