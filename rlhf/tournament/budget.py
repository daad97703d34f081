"""The tournament's budget axis (``--budget N``): each arm trains N times its default length in one run that
saves a checkpoint at every multiple of that length (1x, 2x, ..., Nx; every checkpoint kept), and every seed's
evaluation scores each checkpoint (evaluate.py evaluation.checkpoints=true), so the report can draw quality
against cost (rlhf/tournament/frontier.py).

The learning rate is constant after warm-up (``constant_with_warmup``, the warm-up as many updates as at 1x):
under the default decay to 0 over the whole run, the 1x checkpoint of a 4x run would be a run at 4 times its
learning rate left part-way down its schedule, not the run of length 1x; a constant rate makes each checkpoint
what a run stopped there would be, but for the decay a 1x run's last updates would have had.
"""

from __future__ import annotations

from rlhf.errors import ConfigError

LENGTH_KEYS = {"dpo": "max_steps", "ppo": "iterations", "grpo": "max_steps", "rloo": "max_steps"}
SCHEDULE = "constant_with_warmup"  # transformers' get_scheduler name (the Trainer's and our PPO's)


def base_length(arm: str, algo) -> tuple[int, float]:
    """(default length in steps or iterations, warm-up ratio) of an arm's composed ``algo`` config; an arm that
    trains by epochs has no step count to multiply: one error line naming the fix."""
    key = LENGTH_KEYS[arm]
    length = int(algo[key])
    if length <= 0:
        raise ConfigError(
            f"--budget: {arm} trains by epochs here (algo.{key}={length}); give it a length, e.g. {arm}:algo.{key}=100"
        )
    return length, float(algo.get("warmup_ratio", 0.0))


def budget_overrides(arm: str, length: int, warmup_ratio: float, budget: int) -> list[str]:
    """The overrides of ``arm``'s run at ``budget`` x ``length``: saving at every ``length`` and keeping every
    checkpoint, constant learning rate after a warm-up of as many updates as at 1x."""
    key = LENGTH_KEYS[arm]
    return [
        f"algo.{key}={length * budget}",
        f"algo.save_every={length}",
        f"algo.keep_checkpoints={budget}",
        f"algo.lr_scheduler_type={SCHEDULE}",
        f"algo.warmup_ratio={warmup_ratio / budget:g}",
    ]
