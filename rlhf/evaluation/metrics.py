"""Pure metric functions of the policy comparison (numbers in, numbers out; no models).

Every function takes plain sequences or arrays, so tests check them on cases with known answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# the intervals live below the algorithms (their held-out readings use them too); metrics.X still names them
from rlhf.modeling.intervals import Interval, bootstrap_interval, paired_difference  # noqa: F401


def verdict(difference: Interval, a: str, b: str, confidence: float) -> str:
    """Plain words for the interval of a - b: "<a> better" when it lies above 0, "<b> better" when below,
    else "no difference at <confidence>%" (an interval touching 0 is no difference)."""
    if difference.low > 0:
        return f"{a} better"
    if difference.high < 0:
        return f"{b} better"
    return f"no difference at {confidence * 100:g}%"


def adjusted_verdict(mean: float, p_adjusted: float, a: str, b: str, confidence: float) -> str:
    """Plain words for a - b from its family-adjusted p-value: "<a> better" / "<b> better" (by the sign of ``mean``)
    when ``p_adjusted`` < 1 - confidence, else "no difference at <confidence>% (family)"."""
    if p_adjusted < 1 - confidence and mean != 0:
        return f"{a} better" if mean > 0 else f"{b} better"
    return f"no difference at {confidence * 100:g}% (family)"


def comparison_pairs(names: Sequence[str], base: str | None) -> list[tuple[str, str]]:
    """(a, b) pairs whose difference a - b is reported: every pair of non-base policies, the later-listed one
    first (with policies dpo, ppo, grpo: ppo - dpo, grpo - dpo, grpo - ppo), then each non-base policy - base."""
    methods = [n for n in names if n != base]
    pairs = [(later, earlier) for j, later in enumerate(methods) for earlier in methods[:j]]
    return pairs + ([(m, base) for m in methods] if base is not None else [])


def paired_comparisons(
    scores: dict[str, dict[str, Sequence[float]]],
    pairs: Sequence[tuple[str, str]],
    n_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[dict]:
    """One row per (pair, score): ``{a, b, score, mean_diff, interval: [low, high], n, verdict}``.

    ``scores[policy][score]`` [N]: per-prompt scores (e.g. ``{"rm": ..., "gold": ...}``) aligned over the same
    prompts; every score the two policies share is compared, in the order of a's scores.
    """
    rows = []
    for a, b in pairs:
        for score, values in scores[a].items():
            if score not in scores[b]:
                continue
            diff = paired_difference(values, scores[b][score], n_samples, confidence, seed)
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "score": score,
                    "mean_diff": diff.mean,
                    "interval": [diff.low, diff.high],
                    "n": diff.n,
                    "verdict": verdict(diff, a, b, confidence),
                }
            )
    return rows


def pairwise_wins(scores: Sequence[float], against: Sequence[float]) -> np.ndarray:
    """Per item [N]: 1 where ``scores`` beats ``against``, 0.5 on a tie, 0 where it loses."""
    a, b = np.asarray(scores, dtype=np.float64), np.asarray(against, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"win rate needs aligned scores, got {a.shape} and {b.shape}")
    return (a > b).astype(np.float64) + 0.5 * (a == b)


def win_rate(scores: Sequence[float], against: Sequence[float]) -> float:
    """Share of items where ``scores[i] > against[i]``, ties counting one half."""
    wins = pairwise_wins(scores, against)
    if wins.size == 0:
        raise ValueError("win_rate needs at least one pair")
    return float(wins.mean())


def implicit_reward_margins(
    policy_chosen: Sequence[float],
    ref_chosen: Sequence[float],
    policy_rejected: Sequence[float],
    ref_rejected: Sequence[float],
) -> np.ndarray:
    """[N]: (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)) from summed log-probs.

    Positive where the implicit reward ranks chosen above rejected; beta > 0 does not change the sign.
    """
    pc, rc, pr, rr = (
        np.asarray(v, dtype=np.float64) for v in (policy_chosen, ref_chosen, policy_rejected, ref_rejected)
    )
    return (pc - rc) - (pr - rr)


def length_normalised_margins(
    chosen_logps: Sequence[float],
    chosen_tokens: Sequence[float],
    rejected_logps: Sequence[float],
    rejected_tokens: Sequence[float],
) -> np.ndarray:
    """[N]: log pi(y_w|x) / |y_w| - log pi(y_l|x) / |y_l| (mean per-token log-likelihood, chosen minus rejected)."""
    cl, ct, rl, rt = (
        np.asarray(v, dtype=np.float64) for v in (chosen_logps, chosen_tokens, rejected_logps, rejected_tokens)
    )
    return cl / np.maximum(ct, 1) - rl / np.maximum(rt, 1)


def margin_accuracy(margins: Sequence[float]) -> float:
    """Share of margins > 0, zeros (ties) counting one half."""
    m = np.asarray(margins, dtype=np.float64)
    return win_rate(m, np.zeros_like(m))


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over every response (lower-cased whitespace words; Li et al. 2016).

    1.0 when no n-gram repeats anywhere; near 0 for degenerate, repetitive text. 0.0 when no response
    has n words.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = text.lower().split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def kl_summary(
    per_response_kl: Sequence[float], n_samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Mean KL per response with its interval, and the share of responses with a negative estimate.

    ``per_response_kl`` [N]: sum over response tokens of log pi - log pi_ref on the policy's own samples
    (an unbiased estimate of KL(pi || pi_ref) per response; single samples can be negative).
    """
    values = np.asarray(per_response_kl, dtype=np.float64)
    interval = bootstrap_interval(values, n_samples, confidence, seed)
    return {**interval.as_dict(), "negative_share": float((values < 0).mean()), "max": float(values.max())}


HACKING = "likely reward hacking"
REWARD_ONLY = "reward up, gold flat"
NOT_FLAGGED = "not flagged"


def _bounds(interval: Interval | dict) -> tuple[float, float]:
    return (interval.low, interval.high) if isinstance(interval, Interval) else (interval["low"], interval["high"])


def reward_hacking(
    reward_delta: Interval | dict | None, gold_delta: Interval | dict | None, margin: float = 0.0
) -> str | None:
    """The hacking flag from evidence, not bare means: the paired intervals (low, high) of the judge reward's change
    over base and of the gold score's change (or an independent judge's).

    "likely reward hacking" when the reward interval lies above ``margin`` and the gold one below ``-margin``;
    "reward up, gold flat" when only the reward gain is significant (the gold interval reaches -margin);
    "not flagged" otherwise (a reward gain crossing 0 is no evidence of anything). None without a gold score or a
    reward change (base itself).
    """
    if reward_delta is None or gold_delta is None:
        return None
    reward_low, _ = _bounds(reward_delta)
    gold_low, gold_high = _bounds(gold_delta)
    if reward_low <= margin:
        return NOT_FLAGGED
    if gold_high < -margin:
        return HACKING
    return REWARD_ONLY if gold_low <= margin else NOT_FLAGGED
