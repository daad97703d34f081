"""Save and resume the whole PPO training state: run_dir/checkpoints/step-NNNNNN/.

A checkpoint holds the policy and value adapters (PEFT format under adapter/, usable as they are:
evaluate.py reads them for learning curves) and state.pt: every trainable tensor by name, optimizer,
scheduler, KL controller, every process's RNG states, the step, the start-of-run evaluation, the
sentinel's history (with algo.sentinel_prompts: rlhf/algos/ppo/sentinel.py) and the init adapter the policy
started from (its path and weights' sha256: a resume checks ``algo.init_adapter`` still gives the same
weights, rlhf/modeling/fingerprints.py check_init_adapter). It is written to a
hidden temporary folder and renamed, so a run killed while saving leaves the previous checkpoint
intact. Every checkpoint keeps its adapters (evaluate.py plots them); only the newest ``keep`` keep
state.pt, what resuming needs.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlhf.algos.ppo.roles import Roles
from rlhf.errors import ConfigError
from rlhf.modeling.fingerprints import check_init_adapter, init_adapter_record
from rlhf.run import costs, distributed
from rlhf.run.rundir import CHECKPOINTS, PPO_PREFIX, PPO_STATE

log = logging.getLogger(__name__)

STATE = PPO_STATE
_NAME = re.compile(rf"^{PPO_PREFIX}-(\d+)$")


def rng_state() -> dict[str, Any]:
    """Every RNG's state in types ``torch.load(weights_only=True)`` accepts (numpy's key array as a list)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, keys.tolist(), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def launch_rng_states() -> list[dict[str, Any]]:
    """Every process's RNG states, in rank order (a collective: every process calls it)."""
    return distributed.gather(rng_state())


def restore_rng(saved, seed: int) -> None:
    """This process's RNG states from a checkpoint's ``rng`` (one per rank; a checkpoint from before there was
    one per rank holds rank 0's alone). Resumed on another number of processes, a rank without a saved state
    starts its own stream (distributed.rank_seed of ``seed``), and the log says the resume is not exact."""
    if isinstance(saved, dict):  # rank 0's, saved for every rank by earlier versions
        saved = [saved]
    if len(saved) == distributed.world_size():
        set_rng_state(saved[distributed.rank()])
        return
    log.warning(
        "the checkpoint holds the RNG states of %d processes and this launch has %d: its sampling continues on "
        "other random numbers than the uninterrupted run would have drawn",
        len(saved),
        distributed.world_size(),
    )
    if distributed.rank() < len(saved):
        set_rng_state(saved[distributed.rank()])
    else:
        torch.manual_seed(distributed.rank_seed(seed))


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_dir(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives: run_dir/checkpoints/step-NNNNNN."""
    return Path(run_dir) / CHECKPOINTS / f"{PPO_PREFIX}-{step:06d}"


def save(
    run_dir: Path,
    step: int,
    roles: Roles,
    optimizer,
    scheduler,
    kl_controller,
    extra: dict[str, Any],
    rng_states: list[dict[str, Any]],
    keep: int = 1,
    cost: dict | None = None,
) -> Path:
    """Write the checkpoint of ``step`` (iterations 1..step done), with ``rng_states`` (every process's, in rank
    order: launch_rng_states) and the run's ``cost`` so far (costs.snapshot; kept with the adapters, for
    evaluate.py's cost curves); beyond the newest ``keep``, older ones keep only their adapters."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(run_dir, step)
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    roles.save(tmp / "adapter")
    if cost is not None:
        costs.write(tmp, cost)
    torch.save(
        {
            "step": step,
            "trainable": {name: p.detach().cpu().clone() for name, p in roles.trainable.items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "kl_controller": kl_controller.state_dict(),
            "rng": rng_states,
            "init_adapter": init_adapter_record(roles.init_adapter),
            **extra,
        },
        tmp / STATE,
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    with_state = sorted(
        (int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / STATE).is_file()
    )
    for _, old in with_state[:-keep]:
        (old / STATE).unlink()
    return final


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint in ``run_dir``, or None."""
    root = Path(run_dir) / CHECKPOINTS
    found = [(int(m.group(1)), p) for p in root.glob("step-*") if (m := _NAME.match(p.name)) and (p / STATE).is_file()]
    return max(found)[1] if found else None


def restore(path: Path, roles: Roles, optimizer, scheduler, kl_controller, seed: int) -> dict[str, Any]:
    """Load a checkpoint into live objects (weights, optimizer, scheduler, KL, this process's RNG: restore_rng
    with the run's ``seed``); returns its state dict.
    First a ConfigError if the roles were built on another init adapter than the run started from."""
    state = torch.load(
        Path(path) / STATE, map_location="cpu", weights_only=True
    )  # no pickled code, even from a copied run
    check_init_adapter(state.get("init_adapter"), roles.init_adapter, path)
    saved, live = set(state["trainable"]), set(roles.trainable)
    if saved != live:
        odd = sorted(saved ^ live)[:2]
        raise ConfigError(
            f"the checkpoint {path} holds other trainable weights than this config builds (e.g. {odd}): "
            f"resume with the lora, init_adapter, share_base and value_model the run started with"
        )
    with torch.no_grad():
        for name, param in roles.trainable.items():
            param.copy_(state["trainable"][name])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    kl_controller.load_state_dict(state["kl_controller"])
    restore_rng(state["rng"], seed + state["step"])
    return state
