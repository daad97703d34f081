"""Save and resume the whole PPO training state: run_dir/checkpoints/step-NNNNNN/.

A checkpoint holds the policy and value adapters (PEFT format under adapter/, usable as they are:
evaluate.py reads them for learning curves) and state.pt: every trainable tensor by name, optimizer,
scheduler, KL controller, RNG states, the step and the start-of-run evaluation. It is written to a
hidden temporary folder and renamed, so a run killed while saving leaves the previous checkpoint
intact. Every checkpoint keeps its adapters; only the newest keeps state.pt (what resuming needs).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlhf.errors import ConfigError
from rlhf.ppo.roles import Roles

CHECKPOINTS = "checkpoints"
STATE = "state.pt"
_NAME = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, step: int, roles: Roles, optimizer, scheduler, kl_controller, extra: dict[str, Any]) -> Path:
    """Write the checkpoint of ``step`` (iterations 1..step done); older ones keep only their adapters."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / f"step-{step:06d}", root / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    roles.save(tmp / "adapter")
    torch.save(
        {
            "step": step,
            "trainable": {name: p.detach().cpu().clone() for name, p in roles.trainable.items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "kl_controller": kl_controller.state_dict(),
            "rng": rng_state(),
            **extra,
        },
        tmp / STATE,
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in root.iterdir():
        if old != final and _NAME.match(old.name):
            (old / STATE).unlink(missing_ok=True)
    return final


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint in ``run_dir``, or None."""
    root = Path(run_dir) / CHECKPOINTS
    found = [(int(m.group(1)), p) for p in root.glob("step-*") if (m := _NAME.match(p.name)) and (p / STATE).is_file()]
    return max(found)[1] if found else None


def restore(path: Path, roles: Roles, optimizer, scheduler, kl_controller) -> dict[str, Any]:
    """Load a checkpoint into live objects (weights, optimizer, scheduler, KL, RNG); returns its state dict."""
    state = torch.load(Path(path) / STATE, map_location="cpu", weights_only=False)  # our own file: RNG states are not tensors
    saved, live = set(state["trainable"]), set(roles.trainable)
    if saved != live:
        odd = sorted(saved ^ live)[:2]
        raise ConfigError(
            f"the checkpoint {path} holds other trainable weights than this config builds (e.g. {odd}): "
            f"resume with the lora, init_adapter and share_base the run started with"
        )
    with torch.no_grad():
        for name, param in roles.trainable.items():
            param.copy_(state["trainable"][name])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    kl_controller.load_state_dict(state["kl_controller"])
    set_rng_state(state["rng"])
    return state


def truncate_jsonl(path: Path, keep) -> int:
    """Keep the rows of a JSON-lines file for which ``keep(row)`` holds (a killed run got further than
    its checkpoint); returns how many were dropped. Rewritten through a temporary file and a rename."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in lines if keep(json.loads(line))]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)
    return len(lines) - len(kept)


def truncate_metrics(path: Path, step: int) -> int:
    """Drop metrics.jsonl rows logged after ``step``, the checkpoint a run resumes from."""
    return truncate_jsonl(path, lambda row: row["step"] <= step)
