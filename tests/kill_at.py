"""`python tests/kill_at.py SEED <train.py args>`: run train.py and SIGKILL this process at one "kill point",
the way a crash-consistency harness of a storage engine does (tests/run/test_crash_harness.py drives it).

A kill point is a thin wrapper around a function the run passes through; it calls the real function
unchanged and kills the process before it, after it, or after it with its output torn (a file cut short,
or a folder half deleted). The kill comes at the point's n-th call in this process.

    SEED                  random.Random(SEED) picks the point, n and the variant. n is drawn within the number
                          of calls an uninterrupted run makes, read from the JSON file $KILL_AT_COUNTS (written by
                          --count); a resume (``resume=`` among the args) may also draw the points only a resume
                          passes through. A resume makes fewer calls than a whole run, so it may finish unkilled.
    POINT:N:VARIANT       that kill, exactly (to reproduce one: the harness prints what each SEED chose)
    --count=PATH          no kill: write the number of calls of every point to PATH when the run ends

Before it kills, one line goes to stderr: ``kill_at: SIGKILL at POINT call N (VARIANT); resume loaded: ...;
checkpoints published: ...``; a run that never reached its point says ``kill_at: not reached``.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import runpy
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import peft.peft_model  # noqa: E402  (after the path is set)
import torch  # noqa: E402
from transformers import Trainer  # noqa: E402

import rlhf.algos.dpo  # noqa: E402
import rlhf.algos.ppo.loop  # noqa: E402
import rlhf.algos.ppo.roles  # noqa: E402
import rlhf.algos.rm  # noqa: E402
import rlhf.experiment  # noqa: E402
from rlhf.run import job  # noqa: E402
from rlhf.run.tracking import Tracker  # noqa: E402

# point -> the variants a kill there can take:
#   before  the real call never runs         after  it ran and returned
#   torn    it ran, then its file was cut to half its size (a write the kill cut short), or for a folder
#           being deleted, about half its files were deleted
POINTS = {
    "load_data": ("after",),  # the data is read; no checkpoint exists yet
    "tracker_log": ("after",),  # a row of metrics.jsonl was appended (step 1's: before any checkpoint)
    # .hydra/config.yaml (and overrides.yaml) by rlhf/experiment.py; torn: killed with half the text written
    "config_save": ("before", "torn", "after"),
    "weights_write": ("before", "torn", "after"),  # an adapter's safetensors: checkpoints, the final adapter/
    "trainer_optimizer": ("before", "after"),  # Trainer checkpoint: weights written, optimizer and scheduler next
    "trainer_rng": ("after",),  # Trainer checkpoint: RNG states written, trainer_state.json not yet
    "rotate_delete": ("before", "torn", "after"),  # the Trainer's rotation deleting an old checkpoint
    "publish_replace": ("before", "after"),  # the rename that publishes a checkpoint (Trainer's and PPO's)
    "ppo_state_save": ("before", "torn", "after"),  # torch.save of PPO's state.pt
    "evaluate": ("before", "after"),  # rm/dpo/ppo held-out evaluation (dpo: reference scoring; ppo: start) too
    # ppo: eval_samples.jsonl rows appended; torn: the second half of this call's bytes lost, as when a kill comes
    # between two flushes of the write buffer (an append over 8 KiB: with the default 48 held-out prompts)
    "samples_append": ("before", "torn", "after"),
    "truncate_replace": ("before", "after"),  # a resume dropping the rows logged after its checkpoint
    "summary_replace": ("before", "after"),  # the rename that publishes summary.json
    "latest_replace": ("before", "after"),  # the rename that points outputs/latest/<algo> at the finished run
}
# The calls a resume makes of the points an uninterrupted run never reaches (or reaches otherwise).
RESUME_COUNTS = {"truncate_replace": 1, "config_save": 1}

# os.replace callers, by (module, function), and the point each one is.
REPLACE_CALLERS = {
    ("rlhf.algos.hf_trainer.checkpoints", "publish"): "publish_replace",
    ("rlhf.algos.ppo.checkpoint", "save"): "publish_replace",
    ("rlhf.run.rundir", "write_json_atomic"): "summary_replace",
    ("rlhf.run.rundir", "point_latest"): "latest_replace",
    ("rlhf.run.rundir", "truncate_jsonl"): "truncate_replace",
}
CHECKPOINT_NAME = re.compile(r"^(checkpoint|step)-\d+$")


def _caller(depth: int = 2) -> tuple[str, str]:
    frame = sys._getframe(depth)
    return frame.f_globals.get("__name__", ""), frame.f_code.co_name


def _cut(path, keep: float) -> None:
    path = Path(path)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def _cut_tail(path, before: int) -> None:
    """Keep what ``path`` held before a write, and half of what the write added."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: before + (len(data) - before) // 2])


class KillPoints:
    def __init__(self, target: tuple[str, int, str] | None, rng: random.Random):
        self.target = target
        self.rng = rng
        self.calls: Counter[str] = Counter()
        self.published = 0  # checkpoint renames completed in this process
        self.loaded = False  # whether this process (a resume) loaded its checkpoint

    def reached(self, point: str) -> str | None:
        """Count a call of ``point``; the kill variant if this is the chosen call, else None."""
        self.calls[point] += 1
        if self.target is not None and self.target[:2] == (point, self.calls[point]):
            return self.target[2]
        return None

    def kill(self) -> None:
        point, n, variant = self.target
        line = (
            f"kill_at: SIGKILL at {point} call {n} ({variant}); resume loaded: {self.loaded}; "
            f"checkpoints published: {self.published}\n"
        )
        os.write(2, line.encode())
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(self, point: str, real, torn=None, when=None, torn_instead=False):
        """``real`` with the kill point ``point`` around it. ``when()`` says whether this call counts (it looks
        at the caller); ``torn(variant, *args, **kwargs)`` damages what the call wrote, or with ``torn_instead``
        does half of its work in its place."""

        @functools.wraps(real)
        def wrapper(*args, **kwargs):
            if when is not None and not when():
                return real(*args, **kwargs)
            variant = self.reached(point)
            if variant == "before" or (variant == "torn" and torn_instead):
                if variant == "torn":
                    torn(variant, *args, **kwargs)
                self.kill()
            result = real(*args, **kwargs)
            if variant == "torn":
                torn(variant, *args, **kwargs)
                self.kill()
            if variant == "after":
                self.kill()
            return result

        return wrapper

    def install(self) -> None:
        called_from = lambda module: lambda: _caller(3)[0] == module  # noqa: E731  (wrapper -> when -> here)

        real_log = Tracker.log
        Tracker.log = self.wrap("tracker_log", real_log)
        job.load_preference_splits = self.wrap("load_data", job.load_preference_splits)
        real_resumed_from = job.Job.resumed_from

        def resumed_from(job_self, step, metrics_rows=None):
            self.loaded = True  # the algorithm calls it once its checkpoint is loaded
            real_resumed_from(job_self, step, metrics_rows)

        job.Job.resumed_from = resumed_from

        def cut_file(index: int, keyword: str):
            def torn(variant, *args, **kwargs):
                _cut(kwargs[keyword] if keyword in kwargs else args[index], 0.5)

            return torn

        def half_written(variant, path, text):
            Path(path).with_name(Path(path).name + ".tmp").write_text(text[: len(text) // 2], encoding="utf-8")

        rlhf.experiment.write_text_atomic = self.wrap(
            "config_save", rlhf.experiment.write_text_atomic, half_written, torn_instead=True
        )
        peft.peft_model.safe_save_file = self.wrap(
            "weights_write", peft.peft_model.safe_save_file, cut_file(1, "filename")
        )
        rlhf.algos.ppo.roles.save_file = self.wrap(
            "weights_write", rlhf.algos.ppo.roles.save_file, cut_file(1, "filename")
        )
        Trainer._save_optimizer_and_scheduler = self.wrap("trainer_optimizer", Trainer._save_optimizer_and_scheduler)
        Trainer._save_rng_state = self.wrap("trainer_rng", Trainer._save_rng_state)

        def half_delete(variant, path, *args, **kwargs):
            files = sorted(p for p in Path(path).rglob("*") if p.is_file())
            for p in files:
                if self.rng.random() < 0.5:
                    p.unlink()

        shutil.rmtree = self.wrap(
            "rotate_delete", shutil.rmtree, half_delete, called_from("transformers.trainer_utils"), torn_instead=True
        )
        torch.save = self.wrap("ppo_state_save", torch.save, cut_file(1, "f"), called_from("rlhf.algos.ppo.checkpoint"))
        rlhf.algos.rm.evaluate_pairs = self.wrap("evaluate", rlhf.algos.rm.evaluate_pairs)
        rlhf.algos.dpo.preference_logprobs = self.wrap("evaluate", rlhf.algos.dpo.preference_logprobs)
        rlhf.algos.ppo.loop.evaluate = self.wrap("evaluate", rlhf.algos.ppo.loop.evaluate)

        def cut_appended(variant, path, *args, **kwargs):
            _cut_tail(path, sizes[-1])

        sizes = []  # the file's size before the call

        def append(path, *args, **kwargs):
            sizes.append(Path(path).stat().st_size if Path(path).is_file() else 0)
            return real_append(path, *args, **kwargs)

        real_append = rlhf.algos.ppo.loop._append_samples
        rlhf.algos.ppo.loop._append_samples = self.wrap("samples_append", append, cut_appended)

        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            caller = _caller()
            if caller == ("rlhf.run.rundir", "write_text_atomic"):  # the atomic writer: whoever called it
                caller = _caller(3)
            point = REPLACE_CALLERS.get(caller)
            if point is None:
                return real_replace(src, dst, *args, **kwargs)
            variant = self.reached(point)
            if variant == "before":
                self.kill()
            real_replace(src, dst, *args, **kwargs)
            if point == "publish_replace" and CHECKPOINT_NAME.match(Path(dst).name):
                self.published += 1
            if variant == "after":
                self.kill()

        os.replace = replace


def choose(spec: str, resume: bool) -> tuple[tuple[str, int, str], random.Random]:
    """The (point, n, variant) that SEED or POINT:N:VARIANT names, and the RNG for torn deletions."""
    if ":" in spec:
        point, n, variant = spec.split(":")
        if point not in POINTS or variant not in POINTS[point]:
            raise SystemExit(f"kill_at: unknown point or variant {spec!r}: {POINTS}")
        return (point, int(n), variant), random.Random(spec)
    rng = random.Random(int(spec))
    counts_file = os.environ.get("KILL_AT_COUNTS")
    if not counts_file:
        raise SystemExit("kill_at: a SEED needs $KILL_AT_COUNTS, the calls of an uninterrupted run (--count=PATH)")
    counts = json.loads(Path(counts_file).read_text())
    if resume:
        counts.update(RESUME_COUNTS)
    names = sorted(p for p, c in counts.items() if c > 0 and p in POINTS)
    point = rng.choice(names)
    return (point, rng.randint(1, counts[point]), rng.choice(POINTS[point])), rng


def main() -> None:
    spec = sys.argv.pop(1)
    count_to = spec.removeprefix("--count=") if spec.startswith("--count=") else None
    resume = any(a.startswith("resume=") for a in sys.argv[1:])
    target, rng = (None, random.Random(0)) if count_to else choose(spec, resume)
    points = KillPoints(target, rng)
    points.install()
    if target is not None:
        os.write(2, f"kill_at: aiming at {target[0]} call {target[1]} ({target[2]})\n".encode())
    sys.argv[0] = str(REPO / "train.py")
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")  # as `python train.py`: Hydra finds conf/ beside it
    finally:
        if count_to:
            Path(count_to).write_text(json.dumps({p: points.calls[p] for p in POINTS}, indent=1) + "\n")
        elif target is not None:
            os.write(2, f"kill_at: not reached ({dict(points.calls)})\n".encode())


if __name__ == "__main__":
    main()
