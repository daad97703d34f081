"""The evaluations DPO and SFT run before training (DPO's reference log-probs, SFT's NLL before) run on the device
training runs on, not where the weights were loaded. On a CPU-only machine the training device is monkeypatched
to ``meta`` (the Trainer moves the model there as it would to a GPU); each evaluation then records its device."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import TrainingArguments

from rlhf.algos import dpo, sft
from rlhf.algos.hf_trainer.placement import on_training_device
from rlhf.config import from_node
from tests.algos.helpers import make_job
from tests.conftest import compose_train, tiny_overrides

META = torch.device("meta")


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def test_the_model_goes_where_the_trainer_trains():
    model = nn.Linear(2, 2)
    assert on_training_device(SimpleNamespace(model=model, args=SimpleNamespace(device=META))) is model
    assert device_of(model) == META


def test_a_model_its_loader_placed_stays():
    model = nn.Linear(2, 2)
    model.hf_device_map = {"": "cpu"}  # e.g. a 4-bit model loaded with device_map
    on_training_device(SimpleNamespace(model=model, args=SimpleNamespace(device=META)))
    assert device_of(model) == torch.device("cpu")


@pytest.fixture
def training_on_meta(monkeypatch):
    """Every TrainingArguments reports ``meta`` as the device this process trains on; nothing is written or trained."""
    real = TrainingArguments.device.fget  # sets up the process state, which the Trainer reads elsewhere

    def meta(self):
        real(self)
        return META

    monkeypatch.setattr(TrainingArguments, "device", property(meta))
    for module in (dpo, sft):
        monkeypatch.setattr(module, "run_trainer", lambda trainer, job: 0)


def job_for(tmp_path, algo: str):
    cfg = compose_train(tiny_overrides(algo=algo), outputs_root=tmp_path / "outputs")
    job = make_job(cfg, tmp_path / "run")
    job.tracker.writes = False  # a process that writes nothing: no adapter of meta tensors to save
    return job, cfg


def test_dpo_scores_the_reference_on_the_training_device(tmp_path, monkeypatch, training_on_meta):
    job, cfg = job_for(tmp_path, "dpo")
    devices = []

    def recording_logprobs(model, tokenizer, examples, *args):
        devices.append(device_of(model))
        return torch.zeros(len(examples)), torch.zeros(len(examples))

    monkeypatch.setattr(dpo, "preference_logprobs", recording_logprobs)
    dpo.train(job, from_node(dpo.Settings, cfg.algo, "algo"))
    assert devices[0] == META  # before training: the reference log-probs of the test split


def test_sft_measures_the_nll_before_training_on_the_training_device(tmp_path, monkeypatch, training_on_meta):
    job, cfg = job_for(tmp_path, "sft")
    devices = []

    def recording_nll(model, tokenizer, examples, settings):
        devices.append(device_of(model))
        return {"eval_loss": 0.0}

    monkeypatch.setattr(sft, "evaluate_nll", recording_nll)
    sft.train(job, from_node(sft.Settings, cfg.algo, "algo"))
    assert devices[0] == META  # eval_loss_before
