"""Which Trainer checkpoints a run can resume from, and the rename that publishes a staged one."""

import json

import transformers.trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import (
    ADAPTER_SAFE_WEIGHTS_NAME,
    ADAPTER_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
)

from rlhf.algos.hf_trainer.checkpoints import publish
from rlhf.run import rundir
from rlhf.run.rundir import complete_checkpoints, is_complete


def checkpoint(run_dir, name, state='{"global_step": 2}', weights="adapter_model.safetensors"):
    folder = run_dir / "checkpoints" / name
    folder.mkdir(parents=True)
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    if weights is not None:
        (folder / weights).write_bytes(b"weights")
    return folder


def test_the_spelled_out_names_are_transformers_own():
    assert rundir.PREFIX == PREFIX_CHECKPOINT_DIR
    assert rundir.TRAINER_STATE == transformers.trainer.TRAINER_STATE_NAME
    assert set(rundir.WEIGHTS) == {
        ADAPTER_SAFE_WEIGHTS_NAME,
        ADAPTER_WEIGHTS_NAME,
        SAFE_WEIGHTS_NAME,
        SAFE_WEIGHTS_INDEX_NAME,
        WEIGHTS_NAME,
        WEIGHTS_INDEX_NAME,
    }


def test_only_complete_checkpoints_count_oldest_first(tmp_path):
    assert complete_checkpoints(tmp_path) == []  # no checkpoints folder yet
    good = [checkpoint(tmp_path, "checkpoint-9"), checkpoint(tmp_path, "checkpoint-10", weights="model.safetensors")]
    checkpoint(tmp_path, "checkpoint-12", state=None)  # killed before its trainer state
    checkpoint(tmp_path, "checkpoint-14", state='{"global_st')  # cut short
    checkpoint(tmp_path, "checkpoint-16", weights=None)
    checkpoint(tmp_path, "step-18")  # PPO's
    (tmp_path / "checkpoints" / ".staging" / "checkpoint-20").mkdir(parents=True)
    (tmp_path / "checkpoints" / "checkpoint-22.tmp").mkdir()
    assert complete_checkpoints(tmp_path) == good  # by step, not by name
    assert not is_complete(tmp_path / "checkpoints" / "checkpoint-99")


def test_publish_replaces_a_folder_of_the_same_step(tmp_path):
    old = checkpoint(tmp_path, "checkpoint-4", state=json.dumps({"global_step": 4, "old": True}))
    staged = checkpoint(tmp_path, ".staging/checkpoint-4", state=json.dumps({"global_step": 4}))
    publish(staged, old)
    assert json.loads((old / "trainer_state.json").read_text()) == {"global_step": 4}
    assert not staged.exists() and not list((tmp_path / "checkpoints" / ".staging").iterdir())
