"""Crash consistency of the Trainer's checkpoints (rm, sft, dpo), on tiny runs through run_experiment:
a save that dies half way leaves no checkpoint-N, resume skips an incomplete checkpoint, and a run that
dies after its last step resumes without training an extra one."""

import importlib
import json
import logging

import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer

from rlhf.experiment import run_experiment
from rlhf.run.tracking import Tracker
from tests.conftest import compose_train, tiny_overrides

# 24 examples in batches of 4: one epoch is exactly the 6 steps.
STEPS = {"algo.max_steps": "6", "algo.save_every": "2", "algo.keep_checkpoints": "2", "dataset.n_train": "24"}
# 32 examples: the 6 steps end inside the first epoch, where the Trainer, resumed at its last step, trains one more.
MID_EPOCH = {"dataset.n_train": "32"}


class Killed(Exception):
    """Stands in for a kill at a known point (in-process, so a test run takes seconds)."""


def train(tmp_path, algo: str, run_dir, resume: bool = False, **extra: str) -> dict:
    args = [f"algo={algo}", *tiny_overrides(**{**STEPS, **extra}), *([f"resume={run_dir}"] if resume else [])]
    return run_experiment(compose_train(args, outputs_root=tmp_path / "outputs"), run_dir)


def train_rows(run_dir) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "loss" in r]


def checkpoint_names(run_dir) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))


def is_complete(checkpoint) -> bool:
    """Spelled out here, so these tests judge the files themselves, not the code under test."""
    state = checkpoint / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (checkpoint / "adapter_model.safetensors").is_file()


def fail_after_step(monkeypatch, at_step: int) -> None:
    """Raise Killed right after training step ``at_step``'s metrics are logged (as tests/signal_at_step.py kills)."""
    real_log = Tracker.log

    def log_then_fail(self, metrics, step):
        real_log(self, metrics, step)
        if step >= at_step and "loss" in metrics:
            raise Killed(f"killed after step {step}")

    monkeypatch.setattr(Tracker, "log", log_then_fail)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_resume_skips_an_incomplete_newest_checkpoint(damage, tmp_path, monkeypatch, caplog):
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        fail_after_step(patch, 5)
        with pytest.raises(Killed):
            train(tmp_path, "rm", run_dir)
    assert checkpoint_names(run_dir) == ["checkpoint-2", "checkpoint-4"] and train_rows(run_dir) == [1, 2, 3, 4, 5]
    # What a kill in the middle of checkpoint-4's save left before saves were atomic.
    state = run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    if damage == "missing":
        state.unlink()
    else:
        state.write_text(state.read_text()[:40])

    caplog.set_level(logging.INFO, logger="rlhf.algos.hf_trainer.loop")
    summary = train(tmp_path, "rm", run_dir, resume=True)
    assert summary["status"] == "finished" and summary["train_steps"] == 6
    assert train_rows(run_dir) == [1, 2, 3, 4, 5, 6]  # resumed from step 2: 3 and 4 redone once
    skipped = [r.getMessage() for r in caplog.records if "incomplete" in r.getMessage()]
    assert len(skipped) == 1 and "checkpoint-4" in skipped[0] and "checkpoint-2" in skipped[0], skipped
    assert checkpoint_names(run_dir) == ["checkpoint-4", "checkpoint-6"]  # keep 2, both written again whole
    assert all(is_complete(p) for p in (run_dir / "checkpoints").glob("checkpoint-*"))


def test_a_save_that_dies_half_way_leaves_no_checkpoint_folder(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    real_save = Trainer._save_optimizer_and_scheduler

    def full_disk_at_step_4(self, output_dir):
        if self.state.global_step == 4:  # the adapter is written, the optimizer is not
            raise Killed("No space left on device")
        real_save(self, output_dir)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_save_optimizer_and_scheduler", full_disk_at_step_4)
        with pytest.raises(Killed):
            train(tmp_path, "rm", run_dir)
    checkpoints = run_dir / "checkpoints"
    assert checkpoint_names(run_dir) == ["checkpoint-2"] and is_complete(checkpoints / "checkpoint-2")
    staged = [p for p in checkpoints.iterdir() if p.name.startswith(".")]
    assert [p.name for p in staged] == [".staging"]
    half = staged[0] / "checkpoint-4"
    assert (half / "adapter_model.safetensors").is_file() and not (half / "trainer_state.json").exists()

    summary = train(tmp_path, "rm", run_dir, resume=True)
    assert summary["train_steps"] == 6 and train_rows(run_dir) == [1, 2, 3, 4, 5, 6]
    assert checkpoint_names(run_dir) == ["checkpoint-4", "checkpoint-6"]
    assert all(is_complete(p) for p in checkpoints.glob("checkpoint-*"))
    assert not list((checkpoints / ".staging").glob("*"))  # the half save was cleared by the next one


@pytest.mark.parametrize("algo", ["rm", "dpo"])
def test_a_run_that_dies_in_its_final_evaluation_resumes_without_an_extra_step(algo, tmp_path, monkeypatch):
    straight = train(tmp_path, algo, tmp_path / "straight", **MID_EPOCH)
    run_dir = tmp_path / "run"

    def evaluation_killed(*args, **kwargs):
        raise Killed("killed in the final evaluation")

    with monkeypatch.context() as patch:
        patch.setattr(importlib.import_module(f"rlhf.algos.{algo}"), "pair_metrics", evaluation_killed)
        with pytest.raises(Killed):
            train(tmp_path, algo, run_dir, **MID_EPOCH)
    assert train_rows(run_dir) == [1, 2, 3, 4, 5, 6] and is_complete(run_dir / "checkpoints" / "checkpoint-6")

    summary = train(tmp_path, algo, run_dir, resume=True, **MID_EPOCH)
    assert summary["status"] == "finished" and summary["train_steps"] == 6
    assert train_rows(run_dir) == [1, 2, 3, 4, 5, 6]
    assert checkpoint_names(run_dir) == ["checkpoint-4", "checkpoint-6"]
    expected = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors")
    got = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    assert summary["eval_accuracy"] == straight["eval_accuracy"]


def eval_rows(run_dir) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "eval_accuracy" in r]


@pytest.mark.parametrize("algo", ["rm", "dpo"])
def test_a_kill_after_the_final_evaluation_is_logged_leaves_it_once(algo, tmp_path, monkeypatch):
    """Killed after the final evaluation's row, before summary.json: the resume redoes the evaluation, and the
    row the killed run logged at the checkpoint's own step goes (the checkpoint counted the rows before it)."""
    run_dir = tmp_path / "run"
    real_log = Tracker.log

    def log_then_fail(self, metrics, step):
        real_log(self, metrics, step)
        if "eval_accuracy" in metrics:
            raise Killed("killed after the final evaluation's row")

    with monkeypatch.context() as patch:
        patch.setattr(Tracker, "log", log_then_fail)
        with pytest.raises(Killed):
            train(tmp_path, algo, run_dir)
    assert eval_rows(run_dir) == [6]

    summary = train(tmp_path, algo, run_dir, resume=True)
    assert summary["status"] == "finished" and summary["train_steps"] == 6
    assert eval_rows(run_dir) == [6] and train_rows(run_dir) == [1, 2, 3, 4, 5, 6]
