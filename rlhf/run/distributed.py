"""One run per launch: what the processes of `torchrun` / `accelerate launch` agree on, and who writes.

The processes of a launch are one run: the main process (rank 0) owns the run directory (its lock,
.hydra/, metrics.jsonl, summary.json, W&B, the latest pointer, checkpoint metadata); the others train
beside it and write nothing but errors. They agree before Hydra composes the config:

- the command line: rank 0 rewrites ``resume=`` (``latest`` picks a run the others could not tell from a
  live one once rank 0 holds its lock) and sends the result to all;
- the run directory: rank 0's timestamp (``RUN_STAMP``, read by conf/hydra/default.yaml) replaces each
  process's own ``${now:...}``, so Hydra gives every rank the same directory;
- whether to go on: rank 0 checks and locks the directory, then tells the others (:func:`agree`), so a
  refused run stops every rank instead of leaving the others waiting in their first collective.

The collectives are accelerate's (``PartialState``: gloo on CPU, NCCL on GPUs), started here once, and every
tensor collective of the project goes through this module: its input is first placed on the process group's
device (:func:`to_group_device`: NCCL reduces CUDA tensors only, and accelerate does not move them for you), and
the result comes back where the input was. tests/collective_guard/ checks that no other module issues one.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from datetime import datetime

RUN_STAMP = "RLHF_RUN_STAMP"  # the launch's timestamp, in every process's environment


def world_size() -> int:
    """How many processes the launch has (1 outside torchrun / accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes the run directory."""
    return rank() == 0


def _state():
    import torch
    from accelerate import PartialState  # imported late: a one-process run never starts a process group

    # cpu=True where there is no GPU: accelerate then starts gloo (without it, it sees no accelerator and
    # no distributed launch at all); the Trainer's use_cpu asks for the same
    return PartialState(cpu=not torch.cuda.is_available())


def group_device():
    """The device the process group's collectives take: ``cuda:LOCAL_RANK`` under NCCL, ``cpu`` under gloo."""
    return _state().device


def to_group_device(tensor):
    """``tensor`` on the process group's device (itself where it already is): every collective's input."""
    return tensor.to(group_device())


def _reduce(tensor, reduction: str):
    """``tensor`` reduced elementwise over the launch's processes, placed for the group and returned where it was."""
    from accelerate.utils import reduce

    return reduce(to_group_device(tensor), reduction=reduction).to(tensor.device)


def broadcast(value):
    """Rank 0's ``value`` (any picklable object), in every process."""
    if world_size() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    _state()
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def gather(value) -> list:
    """Every process's ``value`` (any picklable object), in rank order, in every process."""
    if world_size() == 1:
        return [value]
    from accelerate.utils import gather_object

    _state()
    return gather_object([value])


def rank_seed(seed: int) -> int:
    """This process's seed for its own random stream (``seed`` itself on rank 0): the processes of a launch that
    sample their shares of a batch draw different random numbers, as one process's stream would for its rows."""
    return seed + 1_000_003 * rank()


def barrier() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


@contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. building a cache the others then read), the others after it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def agree_on_launch(argv: list[str], rewrite) -> list[str]:
    """Before Hydra: rank 0's ``rewrite(argv)`` and timestamp for every process (see the module docstring).
    ``rewrite`` may raise a user error; it reaches every rank, each raising it (only rank 0 prints it)."""
    if world_size() == 1:
        return rewrite(argv)
    outcome = None
    if is_main():
        try:
            outcome = (rewrite(argv), datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f"), None)
        except Exception as err:  # sent on, raised by every rank
            outcome = (None, None, err)
    argv, stamp, error = broadcast(outcome)
    if error is not None:
        raise error
    os.environ[RUN_STAMP] = stamp
    return argv


def agree(error: BaseException | None) -> None:
    """Rank 0 tells the others whether the run goes on: ``error`` (what stopped it there), raised in each
    as ``FollowerStopped``; on rank 0 it is raised by the caller itself."""
    verdict = broadcast(None if error is None else str(error))
    if verdict is not None and not is_main():
        raise FollowerStopped(verdict)


class FollowerStopped(Exception):
    """A follower stops because rank 0 refused the run (rank 0 prints why)."""


def quiet_followers() -> None:
    """Followers log only warnings and errors: one train.log, one console, written by rank 0."""
    if not is_main():
        logging.getLogger().setLevel(logging.WARNING)


def shard(n: int) -> slice:
    """This process's contiguous share of ``n`` items (``n`` divisible by the world size)."""
    size = n // world_size()
    return slice(rank() * size, (rank() + 1) * size)


def sum_over_ranks(tensor):
    """Elementwise sum of ``tensor`` over the launch's processes (``tensor`` itself in one process)."""
    if world_size() == 1:
        return tensor
    return _reduce(tensor, "sum")


def max_over_ranks(tensor):
    """Elementwise maximum of ``tensor`` over the launch's processes."""
    if world_size() == 1:
        return tensor
    return _reduce(tensor, "max")


def all_ranks(flag: bool) -> bool:
    """Whether ``flag`` holds in every process (so all take the same branch around a collective)."""
    if world_size() == 1:
        return bool(flag)
    import torch

    return bool(sum_over_ranks(torch.tensor([float(bool(flag))])).item() == world_size())


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds in some process (e.g. a stop signal that reached one of them first)."""
    return not all_ranks(not flag)


def sum_gradients(params) -> None:
    """Sum the gradients of ``params`` over the launch's processes, in one flat buffer (a parameter without a
    gradient in this process counts as zeros). What DDP does after backward; PPO calls it once per optimizer
    step, after accumulating its micro batches, whose loss weights are already shares of the global minibatch."""
    if world_size() == 1:
        return
    import torch

    params = list(params)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = sum_over_ranks(torch.cat([g.reshape(-1).float() for g in grads]))
    offset = 0
    for param, grad in zip(params, grads):
        param.grad = flat[offset : offset + grad.numel()].view_as(grad).to(param.dtype)
        offset += grad.numel()


def adopt_slurm_tasks() -> None:
    """A sweep job that hydra-submitit-launcher started as several SLURM tasks (``hydra.launcher.tasks_per_node``,
    ``hydra.launcher.nodes``; conf/sweep/slurm.yaml) is one launch: submitit's helper exports torch's env://
    variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) from SLURM's, as torchrun would set them.
    Each task sees every GPU of its node (accelerate picks cuda:LOCAL_RANK)."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or "RANK" in os.environ:
        return
    if int(os.environ.get("SLURM_NTASKS", "1")) < 2:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def map_chunks(items: list, chunk_size: int, work) -> list:
    """``work(index, chunk)`` -> one result per item of ``chunk``, for each run of ``chunk_size`` consecutive
    ``items`` (chunk ``index``); each process works on every world-size-th chunk from its rank (none when there
    are fewer chunks than processes), and every process gets all results, in the items' order. The chunks are the
    same for any number of processes, so a ``work`` seeded by the chunk's index gives the same results on one
    process as on many."""
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    done = {index: work(index, chunks[index]) for index in range(rank(), len(chunks), world_size())}
    if world_size() > 1:
        for part in gather(done):  # one dict per process, in rank order
            done.update(part)
    return [result for index in range(len(chunks)) for result in done[index]]
