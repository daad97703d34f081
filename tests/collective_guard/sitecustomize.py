"""Loaded into every process of the multi-process tests (their environment puts this folder on PYTHONPATH).

Every tensor collective that project code issues must go through rlhf.run.distributed, which places its input on
the process group's device (NCCL takes CUDA tensors only; gloo on CPU accepts anything, so a real gloo run alone
cannot tell). The guard wraps torch.distributed's tensor collectives and fails the process when the nearest
project frame that called one lies anywhere else; tests/run/test_collective_placement.py checks that the helpers
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


def _project_caller() -> Path | None:
    """The file of the nearest frame inside rlhf/ on the current stack (None: no project code asked)."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(PROJECT):
            return path
        frame = frame.f_back
    return None


def _guarded(name, collective):
    @functools.wraps(collective)
    def check(*args, **kwargs):
        caller = _project_caller()
        if caller is not None and caller != HELPERS:
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
