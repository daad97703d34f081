"""Percentile-bootstrap intervals over prompts: evaluate.py's metrics (rlhf/evaluation/metrics.py re-exports them)
and the training runs' own held-out readings (rlhf/modeling/held_out.py start_to_final) share them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean with a bootstrap confidence interval [low, high] over ``n`` items."""

    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_interval(
    values: Sequence[float], n_samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Mean of ``values`` [N] with a percentile-bootstrap interval.

    ``n_samples`` resamples of N items drawn with replacement; the interval is the
    ((1 - confidence) / 2, (1 + confidence) / 2) quantiles of the resampled means. The generator is
    seeded, so the same values give the same interval.
    """
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if data.size == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(data.mean())
    if n_samples < 1 or data.size == 1:
        return Interval(mean, mean, mean, int(data.size))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_samples, data.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(mean, float(low), float(high), int(data.size))


def paired_difference(
    scores: Sequence[float], against: Sequence[float], n_samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Mean of ``scores - against`` with a paired percentile-bootstrap interval.

    scores, against [N]: two policies' scores of their responses to the same N prompts. Bootstrapping the N
    per-prompt differences resamples prompt indices jointly (a drawn prompt brings both responses), so how hard a
    prompt is cancels out of the difference. The same (N, n_samples, seed) draws the same resamples for every
    pair of policies.
    """
    a, b = np.asarray(scores, dtype=np.float64), np.asarray(against, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a paired difference needs aligned scores, got {a.shape} and {b.shape}")
    return bootstrap_interval(a - b, n_samples, confidence, seed)
