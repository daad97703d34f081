"""A policy run's trajectory: its kept checkpoints, each with the training cost the run had spent to reach it.

Every policy algorithm saves checkpoints into run_dir/checkpoints/: the Trainer's ``checkpoint-<step>/`` (sft, dpo,
grpo, rloo: the PEFT adapter at the folder's top) and PPO's ``step-<NNNNNN>/adapter/``. Each records the run's
cost so far (rlhf/run/costs.py CHECKPOINT_COSTS: seconds per phase, tokens forwarded and backpropagated,
episodes); a checkpoint saved before checkpoints recorded it has none (its point has no cost). Only the kept
ones are there: ``algo.keep_checkpoints`` rotates the Trainer's (raise it for a curve); PPO keeps every adapter.

The final checkpoint is the policy itself (adapter/, scored as the policy): :func:`policy_checkpoints` leaves it
out, and :func:`final_cost` is its cost (that checkpoint's record, else the summary's totals).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from rlhf.run import costs
from rlhf.run.rundir import ADAPTER, CHECKPOINTS, PPO_PREFIX, PREFIX, TRAINER_STATE

_TRAINER = re.compile(rf"^{PREFIX}-(\d+)$")
_PPO = re.compile(rf"^{PPO_PREFIX}-(\d+)$")
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class Checkpoint:
    """One saved step of a run: its policy adapter folder and the cost record up to it (None: not recorded)."""

    step: int
    adapter: Path
    cost: dict | None
    final: bool  # the run's last step: the policy's own adapter/ holds these weights


def _trainer_final(folder: Path) -> bool:
    """Whether a Trainer checkpoint is at the step its run trained to (trainer_state.json's max_steps)."""
    try:
        state = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return int(state.get("global_step", -1)) == int(state.get("max_steps", -2))


def run_checkpoints(run_dir: Path, summary: dict) -> list[Checkpoint]:
    """Every kept checkpoint of a policy run with a CausalLM adapter, by step (oldest first). PPO's last step
    (``summary["iterations"]``) is final, as is a Trainer checkpoint at its max_steps."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if match := _TRAINER.match(folder.name):
            step, adapter = int(match.group(1)), folder
            final = _trainer_final(folder)
        elif match := _PPO.match(folder.name):
            step, adapter = int(match.group(1)), folder / ADAPTER
            final = step == summary.get("iterations")
        else:
            continue
        if (adapter / ADAPTER_CONFIG).is_file():
            found.append(Checkpoint(step, adapter, costs.recorded(folder), final))
    return sorted(found, key=lambda c: c.step)


def policy_checkpoints(run_dir: Path | None, summary: dict) -> list[Checkpoint]:
    """The checkpoints to score besides the policy: every kept one but the final."""
    return [] if run_dir is None else [c for c in run_checkpoints(run_dir, summary) if not c.final]


def final_cost(run_dir: Path | None, summary: dict) -> dict | None:
    """The policy's own cost: its final checkpoint's record (cumulative across resumes), else the summary's
    totals (a run that did not save at its last step; a resumed one's count the resumed process only)."""
    if run_dir is None:
        return None
    final = [c.cost for c in run_checkpoints(run_dir, summary) if c.final and c.cost]
    if final:
        return final[-1]
    if "phase_seconds" not in summary:
        return None
    keys = ("phase_seconds", "tokens_forwarded", "tokens_backpropagated", "episodes", "wall_time_s")
    return {k: summary.get(k, 0) for k in keys}


def cost_fields(cost: dict | None, parameters: int) -> dict:
    """A trajectory point's cost columns: training seconds (costs.TRAINING_PHASES), FLOPs on ``parameters``
    weights, tokens and episodes; empty without a record."""
    if cost is None:
        return {}
    return {
        "train_seconds": round(costs.training_seconds(cost), 2),
        "train_flops": costs.training_flops(cost, parameters),
        "tokens_forwarded": cost["tokens_forwarded"],
        "tokens_backpropagated": cost["tokens_backpropagated"],
        "episodes": cost["episodes"],
    }
