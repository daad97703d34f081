"""Per-token math of generated responses, shared by PPO, the online arms and evaluation.

Shapes: B rows, P prompt columns (left padding), T response columns (right padding after the first
EOS), V vocabulary, H hidden size. Every function is pure, so each is checked against numbers worked
out by hand (tests/modeling/test_token_math.py).

    position_ids            positions that count real tokens only (left padding never shifts them)
    response_positions      the P-1 .. P+T-2 states / logits that predict the T response tokens
    gather_logprobs         log-probs of chosen tokens under softmax(logits / temperature)
    entropy_from_logits     per-position entropy
    response_mask_after_eos real tokens up to and including the first EOS, and its helpers
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """attention_mask [B, L] (0/1, left padding allowed) -> [B, L] positions counting real tokens only."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_positions(states: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """The states (hidden states [B, L, H] or logits [B, L, V]) that predict the response tokens.

    For input ids [B, L] = [left-padded prompt (P) | response (T)], L = P + T, the state at position i
    predicts token i + 1, so positions P-1 .. P+T-2 score the response tokens at P .. P+T-1:
    [B, L, *] -> [B, T, *]. The last position predicts beyond the sequence and is dropped.
    """
    length = states.shape[1]
    if not 0 < prompt_len < length:
        raise ValueError(f"prompt_len must be in [1, {length - 1}] for sequence length {length}, got {prompt_len}")
    return states[:, prompt_len - 1 : -1]


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities of ``tokens`` under softmax(logits / temperature).

    logits [B, T, V], tokens [B, T] (long) -> [B, T] float32 (float64 if logits are float64).

    The temperature must match the one used for sampling, otherwise the PPO ratio is off.
    Memory: one log-softmax then a gather. Low-precision logits (bf16/fp16) are upcast to
    float32 one row at a time, so the extra memory is one [T, V] row, not a [B, T, V] copy.
    """
    _check_temperature(temperature)
    if logits.shape[:-1] != tokens.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match tokens {tuple(tokens.shape)}")
    index = tokens.long().unsqueeze(-1)
    if logits.dtype in (torch.float32, torch.float64):
        scaled = logits if temperature == 1.0 else logits / temperature
        return F.log_softmax(scaled, dim=-1).gather(-1, index).squeeze(-1)
    rows = []
    for row_logits, row_index in zip(logits, index):
        row = row_logits.float()
        if temperature != 1.0:
            row = row / temperature
        rows.append(F.log_softmax(row, dim=-1).gather(-1, row_index).squeeze(-1))
    return torch.stack(rows)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution softmax(logits), per position.

    logits [B, T, V] -> [B, T] (float32 or wider): H = -sum_v p_v log p_v, with 0 log 0 = 0.
    """
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    logp = F.log_softmax(logits, dim=-1)
    p = logp.exp()
    # 0 * log 0 = 0: masked-out (-inf) logits must not turn the entropy into nan.
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)


def response_mask_after_eos(
    responses: torch.Tensor, eos_token_id: int, pad_token_id: int | None = None
) -> torch.Tensor:
    """Mask of real response tokens: true up to and including the first EOS.

    responses [B, T] (long) -> bool [B, T].
    Rows without EOS end at their first ``pad_token_id`` (exclusive) if one is given and
    present (generation stopped by another criterion), otherwise the whole row is real
    (truncated at the length limit). The result is always prefix-shaped.
    """
    B, T = responses.shape
    positions = torch.arange(T, device=responses.device).expand(B, T)
    is_eos = responses == eos_token_id
    # First EOS index, or T when there is none (argmax of an all-false row is 0, so mask it).
    first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), T)
    end = first_eos + 1  # exclusive end: EOS itself is a real token
    if pad_token_id is not None and pad_token_id != eos_token_id:
        is_pad = responses == pad_token_id
        first_pad = torch.where(is_pad.any(1), is_pad.int().argmax(1), T)
        end = torch.where(is_eos.any(1), end, first_pad)
    return positions < end.clamp(max=T).unsqueeze(1)


def contains_eos(responses: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """responses [B, T] -> bool [B]: whether each row emitted EOS at all."""
    return (responses == eos_token_id).any(1)


def truncate_after_eos(responses: torch.Tensor, eos_token_id: int, pad_token_id: int) -> torch.Tensor:
    """responses [B, T] -> [B, T] copy with every token after the first EOS replaced by pad.

    Use before scoring with the reward model so junk after EOS cannot change the score.
    """
    mask = response_mask_after_eos(responses, eos_token_id)
    return torch.where(mask, responses, torch.full_like(responses, pad_token_id))


def response_logits(causal_lm, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """[B, P+T] ids/mask ([left-padded prompt | response]) -> LM logits [B, T, V] that score the T response tokens:
    the decoder over the whole sequence, the LM head only on the positions that predict a response token."""
    hidden = causal_lm.get_decoder()(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
    ).last_hidden_state
    return causal_lm.get_output_embeddings()(response_positions(hidden, prompt_len))
