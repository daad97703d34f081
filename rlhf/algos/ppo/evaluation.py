"""Held-out evaluation inside a PPO run: the same prompts before and after training.

Metrics (means over the prompts): ``rm_score`` (the frozen reward model), ``gold_score`` (the
synthetic set's gold judge, when the data has one), ``kl`` (sum over response tokens of
log pi - log pi_ref on the sampled tokens: an unbiased estimate of KL(policy || reference) per
response), ``length`` and ``eos_rate``. Sampling is seeded and does not move the training RNG,
so the start and final evaluations draw with the same random numbers. Generation and scoring run
``algo.rollout_chunk_size`` prompts at a time, as the training rollouts do.
"""

from __future__ import annotations

import torch

from rlhf.algos.ppo.roles import Roles
from rlhf.algos.ppo.scoring import score_rollout
from rlhf.data.gold_judge import gold_score_batch
from rlhf.modeling.generation import Sampling, sample


def _last_user_text(prompt: list[dict]) -> str:
    return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")


@torch.no_grad()
def evaluate(
    roles: Roles,
    prompts: list[list[dict]],
    sampling: Sampling,
    greedy: bool,
    chunk_size: int,
    reward_max_length: int,
    seed: int,
    with_gold: bool,
) -> tuple[dict[str, float], list[dict]]:
    """(metrics, one record per prompt with the response and its scores); ``chunk_size`` prompts per
    generate call and sequences per scoring forward."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        rollout = sample(roles, prompts, sampling, greedy, chunk_size=chunk_size)
    scored = score_rollout(roles, rollout, sampling.temperature, chunk_size, reward_max_length, with_values=False)
    mask = rollout.mask.float()
    kl = ((scored.logprobs - scored.ref_logprobs) * mask).sum(1)
    metrics = {
        "rm_score": scored.scores.mean().item(),
        "kl": kl.mean().item(),
        "length": mask.sum(1).mean().item(),
        "eos_rate": rollout.has_eos.float().mean().item(),
    }
    gold = gold_score_batch(rollout.prompts, rollout.texts) if with_gold else [None] * len(rollout)
    if with_gold:
        metrics["gold_score"] = sum(gold) / len(gold)
    records = [
        {"prompt": _last_user_text(p), "response": t, "rm_score": s, "gold_score": g, "kl": k}
        for p, t, s, g, k in zip(rollout.prompts, rollout.texts, scored.scores.tolist(), gold, kl.tolist())
    ]
    return metrics, records
