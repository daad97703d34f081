"""Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath): TRL 1.16's GRPOTrainer on a LoRA policy,
rewarded by our finished reward model. No value model: the baseline is the prompt's own group of completions.

For a prompt x, G = ``num_generations`` completions y_1..y_G, rewards r_i (reward-model score, less the missing-EOS
penalty: rlhf/algos/online_trl.py RewardFunction, scored as PPO scores):

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + 1e-4)       scale_rewards=group (TRL's std: unbiased)
    A_i = r_i - mean(r_1..r_G)                                   scale_rewards=none (Dr. GRPO)
    A_i = (r_i - mean(r_1..r_G)) / (std over the whole rollout + 1e-4)   scale_rewards=batch

and every token t of y_i gets A_i in the clipped surrogate min(rho_t A_i, clip(rho_t, 1-eps, 1+eps) A_i), rho_t =
pi(y_i,t | .) / pi_old(y_i,t | .), minus ``beta`` * KL_t (the k3 estimator exp(q) - q - 1, q = log pi_ref - log pi,
per token, in the loss); ``loss_type`` says how tokens are averaged (see conf/algo/grpo.yaml).

The reference is the base with the adapter disabled, or with ``init_adapter`` a frozen copy of it (TRL's "ref").
Everything else (reward, rollout, held-out evaluation, checkpoints, resume, signals) is rlhf/algos/online_trl.py;
settings and the reason for each default: conf/algo/grpo.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

from trl import GRPOConfig, GRPOTrainer

from rlhf.algos import online_trl
from rlhf.config import check_choice
from rlhf.run.job import Job

__all__ = ["Settings", "LOSS_TYPES", "SCALE_REWARDS", "algo_args", "train"]

# TRL 1.16 GRPOConfig.loss_type values that run with its token-level importance ratios (luspo needs
# importance_sampling_level=sequence, not exposed); each runs one step in tests/algos/test_grpo.py.
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "vespo")
SCALE_REWARDS = ("group", "batch", "none")


@dataclass(frozen=True)
class Settings(online_trl.Settings):
    """conf/algo/grpo.yaml: the knobs both online arms share (online_trl.Settings) and these."""

    loss_type: str
    scale_rewards: str

    def __post_init__(self):
        super().__post_init__()
        check_choice("algo.loss_type", self.loss_type, LOSS_TYPES)
        check_choice("algo.scale_rewards", self.scale_rewards, SCALE_REWARDS)


def algo_args(settings: Settings) -> dict:
    """GRPOConfig's own arguments (the shared ones come from online_trl.training_args)."""
    return dict(loss_type=settings.loss_type, scale_rewards=settings.scale_rewards)


def train(job: Job, settings: Settings) -> dict:
    """Train, save adapter/ (+ tokenizer), and return held-out rm_score / gold_score / kl at start and end."""
    return online_trl.train(job, settings, GRPOTrainer, GRPOConfig, algo_args(settings))
