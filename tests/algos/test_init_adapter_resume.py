"""A resumed PPO or DPO run checks that ``algo.init_adapter`` still gives the adapter it started from: its
checkpoints record the adapter's path and weights' sha256; when outputs/latest/sft has moved on to a newer run,
the resume stops with one error naming the option, both runs and the fix, and resumes with the original path.

The "sft runs" are made directly (a finished run directory around a random LoRA adapter), so no SFT trains."""

import re

import pytest
import torch

from rlhf.algos import dpo
from rlhf.algos.hf_trainer.checkpoints import INIT_ADAPTER, recorded_init_adapter
from rlhf.algos.hf_trainer.loop import last_checkpoint
from rlhf.algos.ppo import checkpoint
from rlhf.algos.ppo import loop as ppo
from rlhf.config import from_node
from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from rlhf.modeling.fingerprints import adapter_fingerprint, check_init_adapter, file_sha256, init_adapter_record
from rlhf.run.job import build_job
from rlhf.run.rundir import point_latest
from tests.algos.helpers import fake_sft_run
from tests.conftest import compose_train, tiny_overrides


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """An outputs root with a finished tiny rm run (latest/rm) and two sft runs, latest/sft -> the first."""
    root = tmp_path_factory.mktemp("outputs")
    run_experiment(compose_train(tiny_overrides(), outputs_root=root), root / "rm" / "run")
    fake_sft_run(root, "new", seed=2)
    fake_sft_run(root, "old", seed=1)  # made last: latest/sft points at it
    return root


def job_and_settings(outputs, run_dir, algo: str, schema, resume: bool = False, **extra: str):
    cfg = compose_train(tiny_overrides(algo=algo, **extra), outputs_root=outputs)
    job = build_job(cfg, run_dir, job_type=algo, group="tests", tags=[], resume=resume)
    return job, from_node(schema, cfg.algo, "algo")


def mismatch(outputs) -> str:
    """The error a resume gives once latest/sft points at the new run (a pattern: both runs, the fix)."""
    old, new = (re.escape(str(outputs / "sft" / name)) for name in ("old", "new"))
    return (
        rf"algo\.init_adapter now resolves to {new}/adapter \(run {new}, sha256 \w+\), not the adapter that run "
        rf"started from, {old}/adapter \(run {old}, sha256 \w+\), .*; resume with algo\.init_adapter={old}, or start "
        r"a new run"
    )


def test_ppo_resume_checks_the_init_adapter(outputs, tmp_path):
    point_latest(outputs, "sft", outputs / "sft" / "old")
    run_dir = tmp_path / "ppo"
    latest = {"algo.init_adapter": str(outputs / "latest" / "sft"), "algo.iterations": "1"}
    job, settings = job_and_settings(outputs, run_dir, "ppo", ppo.Settings, **latest)
    ppo.train(job, settings)
    saved = torch.load(checkpoint.latest(run_dir) / checkpoint.STATE, weights_only=True)["init_adapter"]
    old = outputs / "sft" / "old" / "adapter"
    assert saved == {"path": str(old), "sha256": file_sha256(old / "adapter_model.safetensors")}

    point_latest(outputs, "sft", outputs / "sft" / "new")  # a newer sft run finished since
    job, settings = job_and_settings(outputs, run_dir, "ppo", ppo.Settings, resume=True, **latest)
    with pytest.raises(ConfigError, match=mismatch(outputs)) as error:
        ppo.train(job, settings)
    assert "\n" not in str(error.value)

    original = {**latest, "algo.init_adapter": str(outputs / "sft" / "old")}
    job, settings = job_and_settings(outputs, run_dir, "ppo", ppo.Settings, resume=True, **original)
    assert ppo.train(job, settings)["iterations"] == 1


def test_dpo_resume_checks_the_init_adapter(outputs, tmp_path):
    point_latest(outputs, "sft", outputs / "sft" / "old")
    run_dir = tmp_path / "dpo"
    latest = {"algo.init_adapter": str(outputs / "latest" / "sft"), "algo.max_steps": "1", "algo.save_every": "1"}
    job, settings = job_and_settings(outputs, run_dir, "dpo", dpo.Settings, **latest)
    dpo.train(job, settings)
    saved = last_checkpoint(run_dir)
    old = outputs / "sft" / "old" / "adapter"
    assert recorded_init_adapter(saved) == {"path": str(old), "sha256": adapter_fingerprint(old)}
    assert (saved / INIT_ADAPTER).is_file()

    point_latest(outputs, "sft", outputs / "sft" / "new")
    job, settings = job_and_settings(outputs, run_dir, "dpo", dpo.Settings, resume=True, **latest)
    with pytest.raises(ConfigError, match=mismatch(outputs)):
        dpo.build(job, settings)  # before any weights load

    original = {**latest, "algo.init_adapter": str(outputs / "sft" / "old")}
    job, settings = job_and_settings(outputs, run_dir, "dpo", dpo.Settings, resume=True, **original)
    assert dpo.train(job, settings)["train_steps"] == 1


def test_the_check_passes_the_same_weights_anywhere_and_names_a_changed_start(outputs, tmp_path):
    old, new = outputs / "sft" / "old" / "adapter", outputs / "sft" / "new" / "adapter"
    copy = tmp_path / "copied-adapter"
    copy.mkdir()
    (copy / "adapter_model.safetensors").write_bytes((old / "adapter_model.safetensors").read_bytes())
    check_init_adapter(init_adapter_record(old), copy, "ckpt")  # a copied run directory: same weights
    check_init_adapter(None, new, "ckpt")  # a checkpoint from before records: nothing to compare
    check_init_adapter(init_adapter_record(None), None, "ckpt")
    with pytest.raises(ConfigError, match=r"started from the base model \(algo\.init_adapter=null\), but .* now gives"):
        check_init_adapter(init_adapter_record(None), new, "ckpt")
    with pytest.raises(
        ConfigError, match=rf"started from the init adapter {re.escape(str(old))} .* is null now; resume"
    ):
        check_init_adapter(init_adapter_record(old), None, "ckpt")
    gone = init_adapter_record(copy)
    (copy / "adapter_model.safetensors").unlink()
    with pytest.raises(ConfigError, match=rf"that adapter is no longer at {re.escape(str(copy))}: put it back"):
        check_init_adapter(gone, new, "ckpt")
