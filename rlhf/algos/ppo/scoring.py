"""Step 2 of PPO: what the frozen roles and the old policy say about a rollout, in chunks of sequences.

Shapes as in rlhf/modeling/generation.py: B rows, P prompt columns (left padding), T response columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.algos.ppo.roles import Roles
from rlhf.modeling.generation import Rollout, micro_batches, response_logprobs
from rlhf.modeling.token_math import gather_logprobs


def response_values(roles: Roles, rollout: Rollout, rows: torch.Tensor) -> torch.Tensor:
    """Value estimates [b, T]: V of the state before each response token."""
    input_ids, attention_mask, prompt_len = rollout.joined(rows)
    return roles.response_head("value", input_ids, attention_mask, prompt_len).squeeze(-1).float()


def response_logprobs_and_values(
    roles: Roles, rollout: Rollout, rows: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """With the value head on the policy (``roles.value_on_policy``): the policy's log-probs [b, T] of the
    sampled tokens and the values [b, T], from one pass of the trunk."""
    input_ids, attention_mask, prompt_len = rollout.joined(rows)
    logits, values = roles.policy_and_value_heads(input_ids, attention_mask, prompt_len)
    return gather_logprobs(logits, rollout.responses[rows], temperature), values


@dataclass
class Scored:
    """What the frozen roles and the old policy say about a rollout (all [B, T] except scores [B])."""

    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor  # raw reward-model scores


@torch.no_grad()
def score_rollout(
    roles: Roles,
    rollout: Rollout,
    temperature: float,
    chunk_size: int,
    reward_max_length: int,
    with_values: bool = True,
) -> Scored:
    """Step 2 of PPO: old-policy and reference log-probs, values and reward-model scores, ``chunk_size``
    sequences per forward (algo.rollout_chunk_size; no gradients, so not the training micro batch).
    The old-policy log-probs, entropies and values are the rollout's own when it kept them (sample(...,
    with_logprobs=True); values only with the value head on the policy); otherwise a forward computes them."""
    out = {
        key: torch.zeros(rollout.mask.shape, device=rollout.mask.device)
        for key in ("logprobs", "ref_logprobs", "entropy", "values")
    }
    for rows in micro_batches(rollout, torch.arange(len(rollout)), chunk_size):
        if rollout.logprobs is None:
            out["logprobs"][rows], out["entropy"][rows] = response_logprobs(
                roles, "policy", rollout, rows, temperature, with_entropy=True
            )
        out["ref_logprobs"][rows] = response_logprobs(roles, "reference", rollout, rows, temperature)[0]
        if with_values and rollout.values is None:
            out["values"][rows] = response_values(roles, rollout, rows)
    if rollout.logprobs is not None:
        out["logprobs"], out["entropy"] = rollout.logprobs, rollout.entropy
    if with_values and rollout.values is not None:
        out["values"] = rollout.values
    scores = roles.scores(rollout.conversations(), chunk_size, reward_max_length)
    return Scored(scores=scores, **out)
