"""Where a Trainer's model trains, for the evaluations an algorithm runs before training starts.

The weights load on the CPU (rlhf/modeling/models.py); the Trainer moves the model to ``args.device`` when it is
built, or (DeepSpeed, FSDP) only when training starts. An evaluation before ``trainer.train()`` (DPO's reference
log-probs of the test split, SFT's NLL before training) on the model as loaded would run on the CPU of a GPU box:
:func:`on_training_device` puts it where training runs first.
"""

from __future__ import annotations

from torch import nn
from transformers import Trainer


def placed_by_loader(model: nn.Module) -> bool:
    """Whether the model's loader placed it (a 4-bit model, a ``device_map``): it is not moved (as the Trainer
    does not move it)."""
    return getattr(model, "hf_device_map", None) is not None or bool(getattr(model, "is_loaded_in_4bit", False))


def on_training_device(trainer: Trainer) -> nn.Module:
    """``trainer.model``, on ``trainer.args.device`` (the device this process trains on), where the Trainer puts it
    anyway: it is moved there now if the Trainer left it elsewhere, unless its loader placed it."""
    model = trainer.model
    if not placed_by_loader(model):
        model.to(trainer.args.device)
    return model
