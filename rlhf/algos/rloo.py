"""REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to Basics"): TRL 1.16's RLOOTrainer on a LoRA policy,
rewarded by our finished reward model. No value model: each completion's baseline is the mean reward of the
other completions of its prompt.

For a prompt x, k = ``num_generations`` completions y_1..y_k with rewards (reward-model score, less the
missing-EOS penalty: rlhf/algos/online_trl.py RewardFunction, scored as PPO scores) and a sequence-level KL
penalty, as PPO's k1 estimator summed over the response (N+):

    R_i = r_i - beta * sum_t (log pi_old(y_i,t | .) - log pi_ref(y_i,t | .))
    A_i = R_i - (sum_{j != i} R_j) / (k - 1)                     the leave-one-out baseline
        (normalize_advantages: then (A - mean A) / (std A + 1e-4) over the rollout)

and the loss is the clipped sequence-level surrogate -min(rho_i A_i, clip(rho_i, 1-eps, 1+eps) A_i), rho_i =
pi(y_i | x) / pi_old(y_i | x), averaged over the completions.

The reference is the base with the adapter disabled, or with ``init_adapter`` a frozen copy of it (TRL's "ref").
Everything else (reward, rollout, held-out evaluation, checkpoints, resume, signals) is rlhf/algos/online_trl.py;
settings and the reason for each default: conf/algo/rloo.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

from trl import RLOOConfig, RLOOTrainer

from rlhf.algos import online_trl
from rlhf.run.job import Job

__all__ = ["Settings", "algo_args", "train"]


@dataclass(frozen=True)
class Settings(online_trl.Settings):
    """conf/algo/rloo.yaml: the knobs both online arms share (online_trl.Settings) and this."""

    normalize_advantages: bool


def algo_args(settings: Settings) -> dict:
    """RLOOConfig's own arguments (the shared ones come from online_trl.training_args)."""
    return dict(normalize_advantages=settings.normalize_advantages)


def train(job: Job, settings: Settings) -> dict:
    """Train, save adapter/ (+ tokenizer), and return held-out rm_score / gold_score / kl at start and end."""
    return online_trl.train(job, settings, RLOOTrainer, RLOOConfig, algo_args(settings))
