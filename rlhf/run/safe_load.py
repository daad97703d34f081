"""A resume loads a checkpoint's pickled files (optimizer.pt, scheduler.pt, rng_state.pth, PPO's state.pt) with
torch's safe loader, which refuses a file holding anything but tensors and plain data, so a planted payload never
runs. Its refusal is a traceback whose text advises ``weights_only=False``, the one thing a user must not do: each
file is tried here first, and a refusal becomes one line naming the file."""

from __future__ import annotations

import pickle
from contextlib import nullcontext
from pathlib import Path

from rlhf.errors import ConfigError

PICKLED = (".pt", ".pth")  # torch.save's files in a checkpoint (weights are safetensors)


def refuse_unsafe_pickles(checkpoint: Path, allow=nullcontext) -> None:
    """One ConfigError naming the first pickled file of ``checkpoint`` that the safe loader refuses. ``allow``: a
    context that allowlists what the real load allowlists too (transformers' numpy globals for rng_state.pth), so
    nothing a resume would load is refused here."""
    import torch

    for path in sorted(p for p in Path(checkpoint).rglob("*") if p.suffix in PICKLED and p.is_file()):
        try:
            with allow():
                torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ConfigError(
                f"{path} is not a checkpoint file this project wrote: it holds pickled objects beyond tensors and "
                f"plain data, so it was not loaded (nothing in it ran); delete {Path(checkpoint)} to resume from "
                "the checkpoint before it, or start the run afresh"
            ) from None
