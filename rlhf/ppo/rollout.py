"""Rollouts: prompts -> sampled responses -> per-token log-probs, values and reward-model scores.

Shapes: B prompts in a batch, P prompt columns (left padding), T response columns (right padding
after the first EOS), V vocabulary. Every forward gets position ids from its attention mask
(roles.position_ids), so left padding never shifts positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from rlhf.ppo.roles import Roles
from rlhf.ppo_math import contains_eos, entropy_from_logits, gather_logprobs, response_mask_after_eos, truncate_after_eos


@dataclass(frozen=True)
class Sampling:
    """How responses are drawn (from conf/algo/ppo.yaml; greedy for a deterministic evaluation)."""

    max_prompt_length: int
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    greedy: bool = False


@dataclass
class Rollout:
    """B prompts and the policy's responses to them."""

    prompts: list[list[dict]]  # prompt messages, as in the preference data
    prompt_ids: torch.Tensor  # [B, P] long, left-padded
    prompt_mask: torch.Tensor  # [B, P] 0/1
    responses: torch.Tensor  # [B, T] long, pad after the first EOS
    mask: torch.Tensor  # [B, T] bool: real response tokens, up to and including EOS
    has_eos: torch.Tensor  # [B] bool: the response ended by itself (not cut at max_new_tokens)
    texts: list[str]  # decoded responses, without EOS
    # [B, T] log-probs and entropies of the sampling distribution, from the generation logits (sample(...,
    # with_logprobs=True)); None when not kept.
    logprobs: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    # [B, T] old values, from the generation pass when the value head sits on the policy; None otherwise.
    values: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def conversations(self) -> list[list[dict]]:
        """Prompt + response as messages: what the reward model and the gold judge read."""
        return [prompt + [{"role": "assistant", "content": text}] for prompt, text in zip(self.prompts, self.texts)]

    def joined(self, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """([prompt | response] ids [b, P'+T], attention mask [b, P'+T], P') for the selected rows.

        Prompt columns that are padding in every selected row are dropped (P' <= P): less compute,
        and the position ids from the mask make the result identical.
        """
        prompt_ids, prompt_mask, responses, mask = self.prompt_ids, self.prompt_mask, self.responses, self.mask
        if rows is not None:
            prompt_ids, prompt_mask, responses, mask = prompt_ids[rows], prompt_mask[rows], responses[rows], mask[rows]
        first = int(prompt_mask.any(0).float().argmax())  # first column with a real token in some row
        prompt_ids, prompt_mask = prompt_ids[:, first:], prompt_mask[:, first:]
        input_ids = torch.cat([prompt_ids, responses], 1)
        attention_mask = torch.cat([prompt_mask.long(), mask.long()], 1)
        return input_ids, attention_mask, prompt_ids.shape[1]


def prompt_indices(n_prompts: int, batch_size: int, iteration: int, seed: int) -> list[int]:
    """Prompts of 1-based ``iteration``: consecutive slices of the prompt set, reshuffled every pass.

    A pure function of its arguments, so a resumed run draws exactly the prompts it would have.
    """
    start, out = (iteration - 1) * batch_size, []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n_prompts)
        order = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        out += order[offset : offset + batch_size - len(out)]
    return out


def encode_prompts(tokenizer, prompts: list[list[dict]], max_length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Chat-template the prompts with the assistant turn opened; left padding, left truncation (keep the end)."""
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    sides = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = tokenizer.truncation_side = "left"
    try:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, add_special_tokens=False, return_tensors="pt")
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = sides
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def generation_config(tokenizer, sampling: Sampling) -> GenerationConfig:
    """Plain sampling from softmax(logits / temperature) (top_k=0 and top_p=1 switch those filters off),
    stopping at EOS; nothing from the model's own generation defaults."""
    common = dict(max_new_tokens=sampling.max_new_tokens, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if sampling.greedy:
        return GenerationConfig(do_sample=False, **common)
    return GenerationConfig(do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p, **common)


@torch.no_grad()
def sample(roles: Roles, prompts: list[list[dict]], sampling: Sampling, batch_size: int | None = None,
           with_logprobs: bool = False) -> Rollout:
    """Step 1 of PPO: the policy answers each prompt (in generation chunks of ``batch_size``).

    ``with_logprobs``: also keep the log-probs [B, T] and entropies [B, T] of the distribution each token
    was drawn from, softmax(logits / temperature), from the generation logits (as TRL's PPOTrainer did):
    the policy's old log-probs without a second forward over the rollout; and, when the value head sits
    on the policy (``roles.value_on_policy``), the old values [B, T] from the same pass."""
    tokenizer = roles.tokenizer
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, sampling.max_prompt_length, roles.device)
    config = generation_config(tokenizer, sampling)
    step = batch_size or len(prompts)
    with_values = with_logprobs and roles.value_on_policy
    chunks, logprobs, entropy, values = [], [], [], []
    for start in range(0, len(prompts), step):
        ids, mask = prompt_ids[start : start + step], prompt_mask[start : start + step]
        if not with_logprobs:
            chunks.append(roles.generate(ids, mask, config)[:, ids.shape[1] :])
            continue
        sequences, logits, *chunk_values = roles.generate(ids, mask, config, with_logits=True, with_values=with_values)  # logits [b, t, V]
        chunks.append(sequences[:, ids.shape[1] :])
        chunk_logprobs, chunk_entropy = logprobs_and_entropy(logits, chunks[-1], 1.0 if sampling.greedy else sampling.temperature)
        logprobs.append(chunk_logprobs)
        entropy.append(chunk_entropy)
        values += chunk_values
    width = max(c.shape[1] for c in chunks)
    pad = tokenizer.pad_token_id
    padded = lambda parts, value: torch.cat([torch.nn.functional.pad(c, (0, width - c.shape[1]), value=value) for c in parts])  # noqa: E731
    responses = padded(chunks, pad)
    eos = tokenizer.eos_token_id
    # Generation pads only after EOS, so a row without EOS is real up to the length limit.
    mask = response_mask_after_eos(responses, eos)
    has_eos = contains_eos(responses, eos)
    responses = truncate_after_eos(responses, eos, pad)
    lengths = mask.sum(1) - has_eos.long()  # decode without the EOS token
    texts = [tokenizer.decode(row[:n], skip_special_tokens=True) for row, n in zip(responses.tolist(), lengths.tolist())]
    kept = (padded(logprobs, 0.0), padded(entropy, 0.0)) if with_logprobs else (None, None)
    return Rollout(list(prompts), prompt_ids, prompt_mask, responses, mask, has_eos, texts, *kept,
                   values=padded(values, 0.0) if with_values else None)


def micro_batches(rollout: Rollout, rows: torch.Tensor, size: int) -> list[torch.Tensor]:
    """``rows`` [n] cut into micro batches of ``size`` rows after sorting them by real length (prompt +
    response tokens), so each micro batch pads to less (Rollout.joined drops the prompt columns that are
    padding in every row of a micro batch)."""
    lengths = rollout.prompt_mask[rows].sum(1) + rollout.mask[rows].sum(1)
    return list(rows[torch.argsort(lengths.cpu(), stable=True)].split(size))


def response_logprobs(roles: Roles, role: str, rollout: Rollout, rows: torch.Tensor, temperature: float,
                      with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [b, T] of the sampled response tokens under ``role`` (policy or reference), from
    logits / temperature as in sampling; optionally the entropy [b, T] of that distribution."""
    input_ids, attention_mask, prompt_len = rollout.joined(rows)
    logits = roles.response_head(role, input_ids, attention_mask, prompt_len)  # [b, T, V], bf16 under autocast
    if not with_entropy:
        return gather_logprobs(logits, rollout.responses[rows], temperature), None
    return logprobs_and_entropy(logits, rollout.responses[rows], temperature)


def logprobs_and_entropy(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [b, T, V] (any float dtype), tokens [b, T] -> log-probs of the tokens and entropies, both [b, T]
    float32, under softmax(logits / temperature). Upcast and scaled one row at a time: one [T, V] copy."""
    logprobs = gather_logprobs(logits, tokens, temperature)
    return logprobs, torch.cat([entropy_from_logits(row.float() / temperature) for row in logits.split(1)])


def response_values(roles: Roles, rollout: Rollout, rows: torch.Tensor) -> torch.Tensor:
    """Value estimates [b, T]: V of the state before each response token."""
    input_ids, attention_mask, prompt_len = rollout.joined(rows)
    return roles.response_head("value", input_ids, attention_mask, prompt_len).squeeze(-1).float()


def response_logprobs_and_values(roles: Roles, rollout: Rollout, rows: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
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
def score_rollout(roles: Roles, rollout: Rollout, temperature: float, micro_batch: int, reward_max_length: int,
                  with_values: bool = True) -> Scored:
    """Step 2 of PPO: old-policy and reference log-probs, values and reward-model scores, in micro batches.
    The old-policy log-probs, entropies and values are the rollout's own when it kept them (sample(...,
    with_logprobs=True); values only with the value head on the policy); otherwise a forward computes them."""
    out = {key: torch.zeros(rollout.mask.shape, device=rollout.mask.device) for key in ("logprobs", "ref_logprobs", "entropy", "values")}
    for rows in micro_batches(rollout, torch.arange(len(rollout)), micro_batch):
        if rollout.logprobs is None:
            out["logprobs"][rows], out["entropy"][rows] = response_logprobs(roles, "policy", rollout, rows, temperature, with_entropy=True)
        out["ref_logprobs"][rows] = response_logprobs(roles, "reference", rollout, rows, temperature)[0]
        if with_values and rollout.values is None:
            out["values"][rows] = response_values(roles, rollout, rows)
    if rollout.logprobs is not None:
        out["logprobs"], out["entropy"] = rollout.logprobs, rollout.entropy
    if with_values and rollout.values is not None:
        out["values"] = rollout.values
    scores = roles.scores(rollout.conversations(), micro_batch, reward_max_length)
    return Scored(scores=scores, **out)
