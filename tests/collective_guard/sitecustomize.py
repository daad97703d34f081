"""Loaded into every process of the multi-process tests (their environment puts this folder on PYTHONPATH).

Every tensor collective that project code issues must go through rlhf.run.distributed, which places its input on
the process group's device (NCCL takes CUDA tensors only; gloo on CPU accepts anything, so a real gloo run alone
cannot tell). The guard wraps torch.distributed's tensor collectives and fails the process when project code
other than that module asks for one directly; tests/run/test_collective_placement.py checks that the helpers
of rlhf.run.distributed place what they send.
"""

import functools
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2] / "rlhf"
HELPERS = PROJECT / "run" / "distributed.py"
TENSOR_COLLECTIVES = (
    "all_reduce",
    "all_gather",
    "all_gather_into_tensor",
    "reduce",
    "broadcast",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "all_to_all_single",
    "gather",
    "scatter",
)


def _caller() -> Path:
    """The file of the nearest frame on the current stack outside torch and accelerate: who asked for the collective
    (a library's own collectives, e.g. transformers' inside Trainer.training_step, place their tensors themselves)."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if not any(part in ("torch", "accelerate") for part in path.parts):
            return path
        frame = frame.f_back
    return Path()


def _guarded(name, collective):
    @functools.wraps(collective)
    def check(*args, **kwargs):
        caller = _caller()
        if caller.is_relative_to(PROJECT) and caller != HELPERS:
            raise RuntimeError(
                f"collective_guard: torch.distributed.{name} called from {caller.relative_to(PROJECT.parent)}; "
                "send it through rlhf.run.distributed, which puts it on the process group's device"
            )
        return collective(*args, **kwargs)

    return check


def install() -> None:
    import torch.distributed as dist

    for name in TENSOR_COLLECTIVES:
        setattr(dist, name, _guarded(name, getattr(dist, name)))


install()
