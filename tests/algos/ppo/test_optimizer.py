"""hardware.optim -> PPO's optimizer: the HF Trainer's mapping, PPO's adam_eps, one line when it cannot run."""

import importlib.util

import pytest
import torch
from transformers import Trainer, TrainingArguments
from transformers import trainer_optimizer as hf_optimizers
from transformers.training_args import OptimizerNames

from rlhf.algos.ppo.optimizer import build_optimizer, optimizer_class, trainer_optimizer, training_args
from rlhf.errors import ConfigError

CPU = torch.device("cpu")
NAMES = ["adamw_torch", "adamw_torch_fused"] + (
    ["adamw_bnb_8bit", "paged_adamw_8bit"] if importlib.util.find_spec("bitsandbytes") else []
)


@pytest.mark.parametrize("optim", NAMES)
def test_the_mapping_is_the_trainers(optim):
    """Our read of the table equals Trainer.get_optimizer_cls_and_kwargs on real TrainingArguments."""
    real = TrainingArguments(optim=optim, learning_rate=3e-4, adam_epsilon=1e-5, use_cpu=True, report_to="none")
    ours = training_args(optim=OptimizerNames(optim), learning_rate=3e-4, adam_epsilon=1e-5)
    assert trainer_optimizer(ours) == Trainer.get_optimizer_cls_and_kwargs(real)


def test_adamw_torch_keeps_ppos_learning_rate_and_adam_eps_without_weight_decay():
    cls, kwargs = optimizer_class("adamw_torch", 5e-4, 1e-5, CPU)
    assert cls is torch.optim.AdamW
    assert kwargs == {"lr": 5e-4, "betas": (0.9, 0.999), "eps": 1e-5, "weight_decay": 0.0}
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = build_optimizer([weight], "adamw_torch", 5e-4, 1e-5, CPU)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["eps"], group["weight_decay"]) == (5e-4, 1e-5, 0.0)
    weight.grad = torch.ones(3)
    optimizer.step()
    assert torch.allclose(weight.detach(), torch.full((3,), 1 - 5e-4), atol=1e-7)  # Adam's first step: lr * sign


def test_adamw_torch_fused_is_fused():
    cls, kwargs = optimizer_class("adamw_torch_fused", 1e-4, 1e-5, CPU)
    assert cls is torch.optim.AdamW and kwargs["fused"] is True and kwargs["eps"] == 1e-5


def test_an_unknown_name_lists_working_ones():
    with pytest.raises(ConfigError, match=r"unknown hardware\.optim='adam': .* e\.g\. adamw_torch, adamw_torch_fused"):
        optimizer_class("adam", 1e-4, 1e-5, CPU)


def test_a_missing_package_names_the_knob_and_a_value_that_works(monkeypatch):
    monkeypatch.setattr(hf_optimizers, "is_bitsandbytes_available", lambda: False)
    with pytest.raises(ConfigError) as err:
        optimizer_class("paged_adamw_8bit", 1e-4, 1e-5, CPU)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("hardware.optim=paged_adamw_8bit cannot run on cpu here (ImportError: ")
    assert message.endswith("set hardware.optim=adamw_torch (or install the package it names)")


def test_an_optimizer_without_kernels_here_fails_before_any_model_loads(monkeypatch):
    class NoCpuKernels(torch.optim.Optimizer):  # as bitsandbytes' 8-bit optimizers were on CPU before 0.45
        def __init__(self, params, lr, weight_decay):
            super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

        def step(self, closure=None):
            raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setitem(
        hf_optimizers._OPTIMIZER_HANDLERS, OptimizerNames.ADAMW_BNB, lambda ctx: (NoCpuKernels, ctx.optimizer_kwargs)
    )
    with pytest.raises(
        ConfigError,
        match=r"^hardware\.optim=adamw_bnb_8bit cannot run on cpu here \(RuntimeError: no kernel image .*\): "
        r"set hardware\.optim=adamw_torch$",
    ):
        optimizer_class("adamw_bnb_8bit", 1e-4, 1e-5, CPU)


def test_an_optimizer_that_needs_the_whole_model_is_refused():
    # GaLore wants the model's linear layers (and its package): PPO hands over adapters and heads only.
    with pytest.raises(ConfigError, match=r"^hardware\.optim=galore_adamw .*set hardware\.optim=adamw_torch"):
        optimizer_class("galore_adamw", 1e-4, 1e-5, CPU)


def test_mapping_leaves_accelerates_shared_state_alone():
    """No TrainingArguments is built: its __post_init__ would reset the process group of a torchrun launch."""
    from accelerate.state import PartialState

    before = dict(PartialState._shared_state)
    optimizer_class("adamw_torch", 1e-4, 1e-5, CPU)
    assert PartialState._shared_state == before
