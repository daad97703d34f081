"""Pure tensor math of our PPO trainer for language models.

Everything here is a function of tensors (plus two tiny KL-coefficient controllers), so
each piece can be checked against numbers worked out by hand. Shapes in docstrings:

    B  batch (number of prompt/response pairs)
    T  response length (generated tokens, right-padded after EOS)
    P  prompt length (prompts left-padded to a common P)
    V  vocabulary size

Masks are ``[B, T]`` bool or 0/1 float tensors; ``True``/1 marks a real response token.
Response masks are prefix-shaped: real tokens first, padding after (see
``response_mask_after_eos``).

The conventions follow "The N+ Implementation Details of RLHF with PPO" (Huang et al. 2024)
and Ziegler et al. (2019): the KL penalty is paid on every real token, the scalar score lands
on the last real token, the value after the last real token is 0, and rows that never emit
EOS can be penalised.
"""

from __future__ import annotations

import math
from typing import Any

import torch

WHITEN_EPS = 1e-8
KL_ESTIMATORS = ("k1", "k3", "abs", "mse")

__all__ = [
    "KL_ESTIMATORS",
    "AdaptiveKLController",
    "FixedKLController",
    "apply_missing_eos_penalty",
    "compute_gae",
    "kl_penalty",
    "make_kl_controller",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "normalize_scores",
    "per_token_rewards",
    "policy_loss",
    "sequence_lengths",
    "value_loss",
]


# --------------------------------------------------------------------------- masked stats


def _as_float_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if mask.shape != like.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != values shape {tuple(like.shape)}")
    return mask.to(dtype=like.dtype)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over positions where ``mask`` is true.

    values, mask: same shape (typically [B, T]).
    dim=None -> 0-dim tensor sum(v*m)/sum(m); raises ValueError if the mask is empty.
    dim=d    -> mean along d (e.g. dim=1 gives [B]); an all-masked slice gives nan.
    """
    m = _as_float_mask(mask, values)
    if dim is None:
        count = m.sum()
        if count.item() == 0:
            raise ValueError("masked_mean: mask selects no elements")
        return (values * m).sum() / count
    return (values * m).sum(dim) / m.sum(dim)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``values`` over masked positions, a 0-dim tensor.

    var = masked_mean((v - masked_mean(v))^2); with ``unbiased`` it is multiplied by
    n / (n - 1) (Bessel), n = number of masked elements, which needs n >= 2.
    """
    m = _as_float_mask(mask, values)
    n = m.sum().item()
    if n == 0 or (unbiased and n < 2):
        raise ValueError(
            f"masked_var: mask selects {int(n)} element(s); need >= {2 if unbiased else 1}"
            + (" for the unbiased estimate (pass unbiased=False)" if unbiased else "")
        )
    mean = (values * m).sum() / n
    var = ((values - mean) ** 2 * m).sum() / n
    if unbiased:
        var = var * (n / (n - 1))
    return var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, total=None) -> torch.Tensor:
    """Normalise masked values to unit variance (and zero mean unless ``shift_mean=False``).

    values, mask: same shape -> same shape.
    out = (v - mu) / sqrt(var + 1e-8)  [+ mu if not shift_mean],  mu/var = masked mean/unbiased var.
    Padding positions are set to 0 so they cannot leak into later sums. ``total``: sums a tensor over the
    processes that hold the rest of the batch (rlhf.run.distributed.sum_over_ranks), so mu and var are the
    whole batch's; None = this batch alone.
    """
    m = _as_float_mask(mask, values)
    if total is None:
        mean, var = masked_mean(values, m), masked_var(values, m)
    else:
        mean, var = _global_moments(values, m, total)
    whitened = (values - mean) * torch.rsqrt(var + WHITEN_EPS)
    if not shift_mean:
        # Keep the original mean: only rescale (used for rewards, whose sign matters).
        whitened = whitened + mean
    return whitened * m


def _global_moments(values: torch.Tensor, m: torch.Tensor, total) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean and unbiased variance over the whole batch, shards summed by ``total`` (two reductions)."""
    n, value_sum = total(torch.stack([m.sum(), (values * m).sum()]).double())
    if n < 2:
        raise ValueError(f"masked_whiten: the batch holds {int(n)} masked element(s); need >= 2")
    mean = value_sum / n
    squares = total(((values.double() - mean) ** 2 * m).sum())
    return mean.to(values.dtype), (squares / (n - 1)).to(values.dtype)


# --------------------------------------------------------------------------- KL and rewards


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled-token log-probs.

    logprobs, ref_logprobs [B, T] -> [B, T]. With d = logprobs - ref_logprobs:
      k1:  d                         (unbiased, can be negative per token)
      k3:  (r - 1) - log r, r = exp(-d)   (unbiased, always >= 0; Schulman's "k3")
      abs: |d|
      mse: 0.5 * d^2
    """
    d = logprobs - ref_logprobs
    if estimator == "k1":
        return d
    if estimator == "k3":
        # log r = -d; expm1 keeps precision when the policies are close.
        return torch.expm1(-d) + d
    if estimator == "abs":
        return d.abs()
    if estimator == "mse":
        return 0.5 * d.square()
    raise ValueError(f"unknown KL estimator {estimator!r}; valid: {', '.join(KL_ESTIMATORS)}")


def sequence_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token per row: mask [B, T] (prefix-shaped) -> long [B] = sum - 1.

    An all-padding row would give -1, which is never a valid position, so it raises.
    """
    idx = mask.long().sum(1) - 1
    if (idx < 0).any():
        rows = torch.nonzero(idx < 0).flatten().tolist()
        raise ValueError(f"rows {rows} have no real response tokens")
    return idx


def apply_missing_eos_penalty(scores: torch.Tensor, has_eos: torch.Tensor, penalty: float | None) -> torch.Tensor:
    """Subtract ``penalty`` from the score of every row that never emitted EOS.

    scores [B] float, has_eos [B] bool -> [B] (new tensor). penalty None -> scores unchanged.
    A truncated answer otherwise can collect reward for rambling (N+ study, section on EOS).
    """
    if penalty is None:
        return scores
    if penalty < 0:
        raise ValueError(f"missing_eos_penalty must be >= 0 (it is subtracted), got {penalty}")
    return torch.where(has_eos.bool(), scores, scores - penalty)


def normalize_scores(
    scores: torch.Tensor, clip_value: float | None = None, whiten: bool = False, total=None
) -> torch.Tensor:
    """Optional reward-model score post-processing across the batch.

    scores [B] -> [B]. First clamp to [-clip_value, clip_value] (None: no clipping), then,
    if ``whiten``, shift to zero mean and scale to unit (unbiased) std over the batch (the whole batch
    across processes with ``total``, as in masked_whiten).
    """
    out = scores
    if clip_value is not None:
        if clip_value <= 0:
            raise ValueError(f"clip_value must be > 0 or None, got {clip_value}")
        out = out.clamp(-clip_value, clip_value)
    if whiten:
        out = masked_whiten(out, torch.ones_like(out, dtype=torch.bool), total=total)
    return out


def per_token_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    estimator: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """KL-penalised per-token rewards.

    scores [B] (one scalar per response), logprobs / ref_logprobs / mask [B, T]
    -> (rewards [B, T], kl [B, T]), both 0 on padding.
      kl_t      = kl_penalty(logprobs, ref_logprobs, estimator)_t on real tokens
      rewards_t = -kl_coef * kl_t,  plus scores[b] at t = last real token (mask.sum(1) - 1)
    """
    if scores.dim() != 1 or scores.shape[0] != logprobs.shape[0]:
        raise ValueError(f"scores must be [B]={logprobs.shape[0]}, got {tuple(scores.shape)}")
    m = _as_float_mask(mask, logprobs)
    kl = kl_penalty(logprobs, ref_logprobs, estimator) * m
    rewards = -kl_coef * kl
    last = sequence_lengths(mask)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards = rewards.index_put((rows, last), scores.to(rewards.dtype), accumulate=True)
    return rewards, kl


# --------------------------------------------------------------------------- advantages


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens.

    rewards, values, mask [B, T] -> (advantages [B, T], returns [B, T]).
      delta_t = r_t + gamma * V_{t+1} - V_t,   V after the last real token = 0
      A_t     = delta_t + gamma * lam * A_{t+1}   (backwards, A after the last real token = 0)
      returns = A + V
    Both outputs are 0 on padding. The mask must be prefix-shaped (right padding).
    Advantage whitening (masked_whiten) is left to the caller.
    """
    if not (rewards.shape == values.shape == mask.shape):
        raise ValueError(
            f"rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and mask "
            f"{tuple(mask.shape)} must have the same [B, T] shape"
        )
    m = _as_float_mask(mask, values)
    if (m[:, 1:] > m[:, :-1]).any():
        raise ValueError("compute_gae: mask must be prefix-shaped (real tokens, then padding only)")
    # Zeroing padding makes "V after the last real token = 0" hold automatically.
    values = values * m
    rewards = rewards * m
    T = rewards.shape[1]
    advantages = torch.zeros_like(values)
    last_gae = torch.zeros_like(values[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = (delta + gamma * lam * last_gae) * m[:, t]
        advantages[:, t] = last_gae
    returns = (advantages + values) * m
    return advantages, returns


# --------------------------------------------------------------------------- losses


def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate loss (to minimise).

    new_logprobs, old_logprobs, advantages, mask [B, T] -> (loss 0-dim, stats).
      ratio = exp(new - old)
      loss  = masked_mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))
    stats (detached 0-dim tensors): clipfrac (share of tokens where the clipped term is
    the larger one), approxkl = 0.5 * masked_mean((new - old)^2), ratio_mean, ratio_max.
    """
    if clip_range <= 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range}")
    log_ratio = new_logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        real = mask.bool()
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).to(ratio.dtype), mask),
            "approxkl": 0.5 * masked_mean(log_ratio.square(), mask),
            "ratio_mean": masked_mean(ratio, mask),
            "ratio_max": ratio[real].max(),
        }
    return loss, {k: v.detach() for k, v in stats.items()}


def value_loss(
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value-function loss (to minimise).

    new_values, old_values, returns, mask [B, T] -> (loss 0-dim, stats).
      v_clip = old + clamp(new - old, -eps, eps)
      loss   = 0.5 * masked_mean(max((new - R)^2, (v_clip - R)^2))
    stats (detached): clipfrac (share of tokens where the clipped error is the larger one).
    """
    if clip_range <= 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range}")
    v_clipped = old_values + torch.clamp(new_values - old_values, -clip_range, clip_range)
    err_unclipped = (new_values - returns).square()
    err_clipped = (v_clipped - returns).square()
    loss = 0.5 * masked_mean(torch.maximum(err_unclipped, err_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((err_clipped > err_unclipped).to(new_values.dtype), mask)
    return loss, {"clipfrac": clipfrac.detach()}


# --------------------------------------------------------------------------- KL controllers


def _to_float(x: Any) -> float:
    return float(x.item()) if isinstance(x, torch.Tensor) else float(x)


class FixedKLController:
    """Constant KL coefficient; ``update`` is a no-op so the loop treats both kinds alike."""

    def __init__(self, kl_coef: float):
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Ignore the measurement: the coefficient is fixed."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Adaptive KL coefficient of Ziegler et al. (2019), steering the KL towards ``target``.

    After each batch (``n_steps`` = samples in it, ``current_kl`` = mean per-sequence KL):
      e     = clip(current_kl / target - 1, -0.2, 0.2)
      value = value * (1 + e * n_steps / horizon)
    Too much KL raises the coefficient, too little lowers it, by at most 20% per horizon.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if init_kl_coef < 0:
            raise ValueError(f"init_kl_coef must be >= 0, got {init_kl_coef}")
        if not target > 0:
            raise ValueError(f"adaptive KL target must be > 0, got {target}")
        if not horizon > 0:
            raise ValueError(f"adaptive KL horizon must be > 0, got {horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        kl = _to_float(current_kl)
        if not math.isfinite(kl):
            raise ValueError(f"current_kl must be finite, got {kl}")
        proportional_error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        # Only the adapted coefficient: target/horizon come from the (possibly edited) config.
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


def make_kl_controller(
    kl_coef: float,
    adaptive: bool = False,
    target: float | None = None,
    horizon: float | None = None,
) -> FixedKLController | AdaptiveKLController:
    """Build the KL controller from config values; ``kl_coef`` is the (initial) coefficient."""
    if not adaptive:
        return FixedKLController(kl_coef)
    if target is None or horizon is None:
        raise ValueError(f"adaptive KL control needs target and horizon, got target={target}, horizon={horizon}")
    return AdaptiveKLController(kl_coef, target, horizon)
