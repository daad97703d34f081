"""Crash-consistent Trainer checkpoints: run_dir/checkpoints/checkpoint-<step>/ appears whole or not at all.

transformers' ``Trainer._save_checkpoint`` writes the adapter, optimizer, scheduler, RNG states and last
trainer_state.json straight into checkpoint-N; a kill or a full disk in between leaves a checkpoint-N
that every later resume would pick and crash on. :func:`make_checkpoints_atomic` has the trainer write
into ``checkpoints/.staging/checkpoint-N`` and renames the finished folder into place, then rotates.

    make_checkpoints_atomic(t, m)   the instance hook on a built Trainer (rlhf/algos/hf_trainer/loop.py calls it)

Each checkpoint also records how many rows metrics.jsonl held when it was saved (METRICS_ROWS): a resume
drops the rows logged after it, even those at its own step (the final evaluation, logged after the last
checkpoint, which a resume redoes). With :func:`record_init_adapter` it records the init adapter the run
started from (INIT_ADAPTER: its path and weights' sha256), which a resume checks ``algo.init_adapter`` still
gives (:func:`check_resumed_init_adapter`; :func:`start_adapter` resolves and checks it in one call). And it
records the run's cost so far (rlhf/run/costs.py CHECKPOINT_COSTS), which evaluate.py's cost curves read.

Which checkpoints are complete (what a resume may load) is the run directory's contract:
rlhf.run.rundir.complete_checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from transformers import Trainer
from transformers.trainer_utils import rotate_checkpoints

from rlhf.modeling.fingerprints import check_init_adapter, init_adapter_record
from rlhf.run import costs
from rlhf.run.job import Job
from rlhf.run.rundir import PREFIX, count_rows, resolve_adapter

STAGING = ".staging"  # hidden, so no "checkpoint-*" glob (ours, transformers', resume=latest's) sees it
METRICS_ROWS = "metrics_rows.json"
INIT_ADAPTER = "init_adapter.json"
_INIT_ADAPTER_ATTR = "_rlhf_init_adapter"  # where record_init_adapter leaves the record on a trainer


def record_init_adapter(trainer: Trainer, adapter: Path | None) -> None:
    """Make every checkpoint ``trainer`` saves through :func:`make_checkpoints_atomic` record ``adapter``, the
    init adapter the run started from (None: the base), as INIT_ADAPTER. Call it before training."""
    setattr(trainer, _INIT_ADAPTER_ATTR, init_adapter_record(adapter))


def recorded_init_adapter(checkpoint: Path) -> dict | None:
    """The init adapter ``checkpoint`` recorded (an init_adapter_record), or None if it recorded none."""
    path = Path(checkpoint) / INIT_ADAPTER
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def check_resumed_init_adapter(checkpoint: Path, adapter: Path | None, key: str = "algo.init_adapter") -> None:
    """One ConfigError line when ``adapter`` (what ``key`` resolves to now; None: the base) is not the init
    adapter ``checkpoint`` recorded (same weights pass, wherever they are); nothing when it recorded none."""
    check_init_adapter(recorded_init_adapter(checkpoint), adapter, checkpoint, key)


def start_adapter(job: Job, value: str | None, checkpoint: Path | None) -> Path | None:
    """The adapter ``algo.init_adapter`` (``value``) names, resolved (None: the base); with ``checkpoint`` (the
    one a resume continues from), checked to be the adapter that run started from, before any weights load."""
    adapter = resolve_adapter(value, "algo.init_adapter", job.model) if value else None
    if checkpoint is not None:
        check_resumed_init_adapter(checkpoint, adapter)
    return adapter


def logged_rows(checkpoint: Path) -> int | None:
    """How many metrics.jsonl rows the run had logged when ``checkpoint`` was saved (None: not recorded)."""
    path = Path(checkpoint) / METRICS_ROWS
    return int(json.loads(path.read_text(encoding="utf-8"))["rows"]) if path.is_file() else None


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staged: Path, target: Path) -> None:
    """Move the finished ``staged`` folder to ``target``; an older folder of that name goes first
    (a step saved again after a resume), set aside in the staging folder and deleted after the swap."""
    for path in [*staged.rglob("*"), staged]:  # on disk before the rename, or a power cut could reorder them
        _fsync(path)
    if target.exists():
        old = staged.parent / f"replaced-{target.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, target)
    _fsync(target.parent)


def make_checkpoints_atomic(trainer: Trainer, metrics_path: Path | None = None) -> None:
    """Make every ``trainer._save_checkpoint`` (periodic, on a stop signal, on too many NaN steps) write into
    ``<output_dir>/.staging/checkpoint-N``, rename it to ``<output_dir>/checkpoint-N`` when complete, and
    then rotate to the newest ``args.save_total_limit`` checkpoints, as transformers does. With
    ``metrics_path``, the checkpoint records how many rows that file held (METRICS_ROWS).

    The hook wraps the instance's (TRL's) ``_save_checkpoint`` and, for that call only, points its
    ``_get_output_dir`` at the staging folder: the Trainer's own code does the writing, and the rotation it
    runs there finds only the one checkpoint. The staging folder is cleared before each save.
    Not for ``load_best_model_at_end``: the best checkpoint would be looked up in the staging folder."""
    save = trainer._save_checkpoint  # bound: TRL's override (model card) and then the Trainer's

    def save_atomically(model, trial=None):
        root = Path(trainer._get_output_dir(trial=trial))
        staging = root / STAGING
        if trainer.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # what a save that died half way left
        # Several processes: each writes its part (its RNG state; ZeRO's optimizer shards) into the staging
        # folder, so no one starts before it is cleared, and rank 0 publishes once all have finished.
        trainer.accelerator.wait_for_everyone()
        trainer._get_output_dir = lambda trial=None: str(staging)  # an instance attribute shadows the method
        try:
            save(model, trial)
        finally:
            del trainer._get_output_dir
        trainer.accelerator.wait_for_everyone()
        cost = costs.snapshot()  # the run's cost so far (a collective), for evaluate.py's cost curves
        if trainer.args.should_save:
            name = f"{PREFIX}-{trainer.state.global_step}"
            costs.write(staging / name, cost)
            if metrics_path is not None:  # the Trainer logs a step before it saves it: that row is counted
                rows = {"rows": count_rows(metrics_path)}
                (staging / name / METRICS_ROWS).write_text(json.dumps(rows) + "\n", encoding="utf-8")
            init_adapter = getattr(trainer, _INIT_ADAPTER_ATTR, None)
            if init_adapter is not None:
                (staging / name / INIT_ADAPTER).write_text(json.dumps(init_adapter) + "\n", encoding="utf-8")
            publish(staging / name, root / name)
            rotate_checkpoints(
                output_dir=str(root),
                save_total_limit=trainer.args.save_total_limit,
                best_model_checkpoint=trainer.state.best_model_checkpoint,
                use_mtime=True,
            )

    trainer._save_checkpoint = save_atomically
