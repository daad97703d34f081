"""The tournament's statistics (numbers in, numbers out): a hierarchical bootstrap over seeds and prompts, and
paired differences per seed (the verdicts are rlhf.evaluation.metrics.verdict's, as in one evaluation).

Every method is scored per seed (one training run each) on the same held-out prompts, so a score is a list of S
arrays, one per seed, of P_s per-prompt values. Two sources of noise: which seed (the training run) and which
prompts. The hierarchical bootstrap resamples both: first S seeds with replacement, then, within each drawn
seed, its P_s prompts with replacement. The estimate weighs every seed equally (the mean of the per-seed means).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlhf.evaluation.metrics import Interval


def seed_means(groups: Sequence[Sequence[float]]) -> np.ndarray:
    """[S] per-seed means of ``groups`` (S arrays of per-prompt values)."""
    return np.array([np.mean(np.asarray(g, dtype=np.float64)) for g in groups])


def hierarchical_bootstrap(
    groups: Sequence[Sequence[float]], n_samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Mean over seeds of the per-seed mean of ``groups`` (S arrays [P_s]) with a two-level percentile bootstrap.

    Each of ``n_samples`` resamples draws S seed indices with replacement and, for each drawn seed s, P_s prompt
    indices with replacement from that seed's values; its statistic is the mean over the drawn seeds of their
    resampled prompt means. The interval is the ((1 - confidence) / 2, (1 + confidence) / 2) quantiles of those
    statistics. ``Interval.n`` counts the seeds. Seeded: the same values give the same interval.

    With one seed this is the percentile bootstrap over prompts; with constant values it has zero width; with
    constant values within each seed only the seeds vary (two seeds at 0 and 1: means 0, 0.5, 1 drawn with
    probabilities 1/4, 1/2, 1/4).
    """
    arrays = [np.asarray(g, dtype=np.float64).reshape(-1) for g in groups]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("hierarchical_bootstrap needs at least one seed, each with at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n_seeds = len(arrays)
    estimate = float(seed_means(arrays).mean())
    if n_samples < 1:
        return Interval(estimate, estimate, estimate, n_seeds)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_seeds, size=(n_samples, n_seeds))  # [B, S]: which seed fills each slot
    resampled = np.empty((n_samples, n_seeds))  # [B, S]: that seed's prompt-resampled mean
    for slot in range(n_seeds):
        for s in range(n_seeds):
            rows = np.flatnonzero(drawn[:, slot] == s)
            if rows.size:
                values = arrays[s]
                resampled[rows, slot] = values[rng.integers(0, values.size, size=(rows.size, values.size))].mean(1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(resampled.mean(axis=1), [alpha, 1 - alpha])
    return Interval(estimate, float(low), float(high), n_seeds)


def paired_differences(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """Per seed, ``a - b`` prompt by prompt (S arrays [P_s]): both methods answered the same prompts in that seed's
    evaluation, so the difference removes what the prompts share (pairing narrows the interval)."""
    if len(a) != len(b):
        raise ValueError(f"paired differences need the same seeds, got {len(a)} and {len(b)}")
    out = []
    for x, y in zip(a, b):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError(f"paired differences need the same prompts in a seed, got {x.shape} and {y.shape}")
        out.append(x - y)
    return out
