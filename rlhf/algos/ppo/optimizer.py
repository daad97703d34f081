"""PPO's optimizer from ``hardware.optim``, mapped as the HF Trainer maps it (the same table, not a copy).

``hardware.optim`` is a TrainingArguments.optim name (adamw_torch, adamw_torch_fused, adamw_bnb_8bit,
paged_adamw_8bit, ...). PPO keeps its own learning rate and ``adam_eps`` and no weight decay (LoRA, as N+).
An optimizer that cannot run here (its package missing, a kernel this device lacks) fails in one line naming
``hardware.optim`` and a value that works, before any model loads. bitsandbytes' paged optimizers on a CPU
are run unpaged by bitsandbytes itself (its warning says so): the documented fallback.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch
from transformers import TrainingArguments
from transformers.training_args import OptimizerNames

from rlhf.errors import ConfigError

SAFE = "adamw_torch"  # the value that runs everywhere, named in every error
EXAMPLES = "adamw_torch, adamw_torch_fused, adamw_bnb_8bit, paged_adamw_8bit"
# bitsandbytes' smallest tensor with 8-bit state (smaller ones keep 32-bit state, and would test nothing)
PROBE_SIZE = 4096


def training_args(**values) -> SimpleNamespace:
    """TrainingArguments' fields at their defaults, then ``values``: what the Trainer's optimizer table reads,
    without constructing TrainingArguments, whose __post_init__ sets up devices and resets accelerate's shared
    state (the process group rlhf/run/distributed.py started)."""
    defaults = {}
    for field in dataclasses.fields(TrainingArguments):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    return SimpleNamespace(**{**defaults, **values})


def trainer_optimizer(args) -> tuple[type, dict]:
    """What ``Trainer.get_optimizer_cls_and_kwargs(args)`` returns, read from the table that method reads
    (transformers.trainer_optimizer) without importing transformers.trainer, which pulls in datasets
    (~85 MB resident, tests/test_layers.py). tests/algos/ppo/test_optimizer.py checks the two agree."""
    try:
        from transformers.trainer_optimizer import _OPTIMIZER_HANDLERS, OptimizerContext
    except ImportError:  # the table moved in another transformers: the public method, at the price of the import
        from transformers import Trainer

        return Trainer.get_optimizer_cls_and_kwargs(args)
    context = OptimizerContext(
        args=args,
        model=None,
        optimizer_kwargs={"lr": args.learning_rate},
        adam_kwargs={"betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon},
        optim_args={},
    )
    return _OPTIMIZER_HANDLERS[args.optim](context)


def _cannot_run(optim: str, device: torch.device, err: Exception) -> ConfigError:
    detail = " ".join(str(err).split())[:200]
    fix = f"set hardware.optim={SAFE}" + (" (or install the package it names)" if isinstance(err, ImportError) else "")
    return ConfigError(
        f"hardware.optim={optim} cannot run on {device.type} here ({type(err).__name__}: {detail}): {fix}"
    )


def optimizer_class(optim: str, learning_rate: float, adam_eps: float, device: torch.device) -> tuple[type, dict]:
    """(optimizer class, keyword arguments) for ``hardware.optim`` on ``device``, after one probe step on a
    throwaway weight there; ConfigError when it cannot run. Build it with ``cls(params, **kwargs)``."""
    try:
        name = OptimizerNames(optim)
    except ValueError:
        raise ConfigError(
            f"unknown hardware.optim={optim!r}: use a TrainingArguments.optim name, e.g. {EXAMPLES}"
        ) from None
    args = training_args(optim=name, learning_rate=learning_rate, adam_epsilon=adam_eps)
    try:
        cls, kwargs = trainer_optimizer(args)
    except (ImportError, ValueError, NotImplementedError, AttributeError) as err:  # a package missing, needs the model
        raise _cannot_run(optim, device, err) from None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)) or "params" in kwargs:
        raise ConfigError(
            f"hardware.optim={optim} builds its optimizer from the whole model (parameter groups or a factory), "
            f"which PPO's adapters and heads are not: set hardware.optim={SAFE}"
        )
    kwargs = {**kwargs, "weight_decay": 0.0}
    try:
        _probe(cls, kwargs, device)
    except (RuntimeError, ValueError, TypeError, NotImplementedError, ImportError) as err:
        raise _cannot_run(optim, device, err) from None
    return cls, kwargs


def _probe(cls: type, kwargs: dict, device: torch.device) -> None:
    """One step on a throwaway weight on ``device``: an optimizer without kernels there fails now, not after
    the models load. Draws no random numbers (a resumed run's RNG stays where it was)."""
    weight = torch.nn.Parameter(torch.zeros(PROBE_SIZE, device=device))
    optimizer = cls([weight], **kwargs)
    weight.grad = torch.ones_like(weight)
    optimizer.step()


def build_optimizer(params, optim: str, learning_rate: float, adam_eps: float, device: torch.device):
    """The optimizer over ``params`` (PPO's trainable adapters and heads) that ``hardware.optim`` names."""
    cls, kwargs = optimizer_class(optim, learning_rate, adam_eps, device)
    return cls(params, **kwargs)
