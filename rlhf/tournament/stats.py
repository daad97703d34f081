"""The tournament's statistics (numbers in, numbers out): intervals for a crossed design of seeds and prompts, paired
differences per seed, and Holm's adjustment over a report's family of verdicts.

Every method is scored per seed (one training run each) on the same held-out prompts (``dataset.seed`` fixes them),
so a score is an [S, P] table: S seeds crossed with the same P prompts. Its model is two-way random effects,

    y[s, p] = mu + a[s] + b[p] + e[s, p],   a ~ (0, var_seed), b ~ (0, var_prompt), e ~ (0, var_noise),

where ``a`` is the training run's effect, ``b`` how easy a prompt is for every seed (shared across seeds) and ``e``
what is left. The estimate is the grand mean; its variance is var_seed / S + var_prompt / P + var_noise / (S P).

Why this interval and not a bootstrap: with 3 to 5 seeds a percentile bootstrap over seeds sees at most 10 (S=3) or
126 (S=5) distinct seed sets, shrinks the seed variance by (S - 1) / S and uses normal quantiles where the seed term
has S - 1 degrees of freedom; the nested one also resampled each seed's prompts apart, though every seed shares them.
It covered 80-87% with a seed effect at 3 and 5 seeds. A studentized bootstrap fixes the quantiles, but its
studentization rests on the same S - 1 degrees of freedom and costs a double loop. Here the grand mean's error is
split exactly in two independent parts: the seed means' spread (a t on S - 1 degrees of freedom: the t-interval over
seed means, which the shared prompt effect cancels out of) plus the shared prompt effect's mean (normal, its variance
estimated on P - 1 degrees of freedom from the ANOVA mean squares). The interval is the mean +- the 95% quantile of
that sum (a Behrens-Fisher-like fiducial interval: exact with no shared prompt effect, never short with one; the
Welch-Satterthwaite t instead covered 92% at 3 seeds with both effects). Coverage is checked by simulation of the
tournament's layout (tests/tournament/test_coverage.py).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

from rlhf.evaluation.metrics import Interval


def seed_means(groups: Sequence[Sequence[float]]) -> np.ndarray:
    """[S] per-seed means of ``groups`` (S arrays of per-prompt values)."""
    return np.array([np.mean(np.asarray(g, dtype=np.float64)) for g in groups])


def crossed_table(groups: Sequence[Sequence[float]]) -> np.ndarray:
    """``groups`` (S arrays [P], every seed on the same P prompts in the same order) as one [S, P] table; refuses
    ragged input (seeds on different prompts are not a crossed design)."""
    arrays = [np.asarray(g, dtype=np.float64).reshape(-1) for g in groups]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("a crossed interval needs at least one seed, each with at least one value")
    sizes = sorted({a.size for a in arrays})
    if len(sizes) > 1:
        raise ValueError(f"a crossed interval needs every seed on the same prompts, got prompt counts {sizes}")
    return np.stack(arrays)


def crossed_components(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(se_seed, se_prompt, df), the first two [...], of tables [..., S, P]: the grand mean's error split in two
    independent parts, mean - mu = se_seed * T + se_prompt * Z with T ~ t_df and Z ~ N(0, 1).

    Two-way ANOVA without replication: ms_seed = P var(seed means) (df S - 1), ms_prompt = S var(prompt means),
    ms_noise the residual mean square, with expectations P var_seed + var_noise, S var_prompt + var_noise and
    var_noise. The seed means' spread estimates everything but the shared prompt effect (b's mean cancels from
    their deviations), so (mean - mu - mean(b)) / sqrt(ms_seed / (S P)) is exactly t with S - 1 degrees of freedom
    (the t-interval over seed means); mean(b) has variance var_prompt / P, estimated by
    max(ms_prompt - ms_noise, 0) / (S P) on (P - 1) degrees of freedom (taken as known: P is in the hundreds).
    With one seed the seed term is not estimable: se_prompt = 0 and se_seed is the prompts' standard error
    (df P - 1); with one prompt: the t over the S values.
    """
    n_seeds, n_prompts = tables.shape[-2:]
    if n_seeds == 1 or n_prompts == 1:
        values = tables[..., 0, :] if n_seeds == 1 else tables[..., :, 0]
        n = values.shape[-1]
        se = np.sqrt(values.var(axis=-1, ddof=1) / n) if n > 1 else np.zeros(values.shape[:-1])
        return se, np.zeros_like(se), max(n - 1, 1)
    grand = tables.mean(axis=(-2, -1), keepdims=True)
    by_seed = tables.mean(axis=-1, keepdims=True)  # [..., S, 1]
    by_prompt = tables.mean(axis=-2, keepdims=True)  # [..., 1, P]
    ms_seed = n_prompts * ((by_seed - grand) ** 2).sum(axis=(-2, -1)) / (n_seeds - 1)
    ms_prompt = n_seeds * ((by_prompt - grand) ** 2).sum(axis=(-2, -1)) / (n_prompts - 1)
    ms_noise = ((tables - by_seed - by_prompt + grand) ** 2).sum(axis=(-2, -1)) / ((n_seeds - 1) * (n_prompts - 1))
    cells = n_seeds * n_prompts
    return np.sqrt(ms_seed / cells), np.sqrt(np.maximum(ms_prompt - ms_noise, 0.0) / cells), n_seeds - 1


_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(40)  # Gauss-Hermite: E f(Z) = sum w f(sqrt(2) x) / sqrt(pi)
_U, _U_WEIGHTS = np.polynomial.legendre.leggauss(200)  # Gauss-Legendre on (-1, 1): E f(T) = int_0^1 f(F_t^-1(u)) du


def central_probability(q: np.ndarray, se_seed: np.ndarray, se_prompt: np.ndarray, df: int) -> np.ndarray:
    """P(|se_seed * T + se_prompt * Z| <= q), each [...], T ~ t_df and Z ~ N(0, 1) independent.

    One variable integrated out exactly, the other by quadrature over the smoother of the two integrands: where
    se_seed >= se_prompt, E_Z[F_t((q - se_prompt Z) / se_seed) - F_t((-q - se_prompt Z) / se_seed)] by 40-node
    Gauss-Hermite; else E_T[Phi((q - se_seed T) / se_prompt) - Phi((-q - se_seed T) / se_prompt)] by 200-node
    Gauss-Legendre over T's quantiles. Either is exact at its end (se_prompt = 0, resp. se_seed = 0).
    """
    q, a, b = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (q, se_seed, se_prompt)))
    over_normal = a >= b
    safe_a = np.where(a > 0, a, 1.0)[..., None]
    safe_b = np.where(b > 0, b, 1.0)[..., None]
    z = np.sqrt(2.0) * _NODES  # [K]
    shift = b[..., None] * z  # [..., K]
    by_z = (
        special.stdtr(df, (q[..., None] - shift) / safe_a) - special.stdtr(df, (-q[..., None] - shift) / safe_a)
    ) @ (_WEIGHTS / np.sqrt(np.pi))
    t = special.stdtrit(df, (_U + 1) / 2)  # [L]: T's quantiles at the Gauss-Legendre nodes
    shift = a[..., None] * t
    by_t = (special.ndtr((q[..., None] - shift) / safe_b) - special.ndtr((-q[..., None] - shift) / safe_b)) @ (
        _U_WEIGHTS / 2
    )
    return np.where(over_normal, by_z, by_t)


_ANGLES = np.linspace(0.0, np.pi / 2, 513)  # [A]: atan2(se_prompt, se_seed) on which the half width is tabulated


@functools.lru_cache(maxsize=64)
def _unit_half_widths(df: int, confidence: float) -> np.ndarray:
    """[A]: the half width for se_seed = cos(angle), se_prompt = sin(angle) at each of ``_ANGLES``, by 50 bisection
    steps between 0 and the Bonferroni bound t_{1 - alpha/4, df} cos + z_{1 - alpha/4} sin (alpha = 1 - confidence).
    The ends are t_{(1 + confidence) / 2, df} (no prompt term) and z_{(1 + confidence) / 2} (no seed term)."""
    tail = 1 - (1 - confidence) / 4
    se_seed, se_prompt = np.cos(_ANGLES), np.sin(_ANGLES)
    low = np.zeros_like(_ANGLES)
    high = scipy_stats.t.ppf(tail, df) * se_seed + scipy_stats.norm.ppf(tail) * se_prompt
    for _ in range(50):
        mid = (low + high) / 2
        inside = central_probability(mid, se_seed, se_prompt, df) >= confidence
        high, low = np.where(inside, mid, high), np.where(inside, low, mid)
    return high


def crossed_half_width(se_seed: np.ndarray, se_prompt: np.ndarray, df: int, confidence: float) -> np.ndarray:
    """[...]: the q with central_probability(q) = confidence. It scales with the length of (se_seed, se_prompt), so
    it is that length times the unit half width at their angle, interpolated on a 513-point table (smooth in the
    angle: its central probability is within 1e-5 of ``confidence``). Zero where both are zero."""
    se_seed, se_prompt = np.asarray(se_seed, dtype=np.float64), np.asarray(se_prompt, dtype=np.float64)
    unit = np.interp(np.arctan2(se_prompt, se_seed), _ANGLES, _unit_half_widths(int(df), float(confidence)))
    return np.hypot(se_seed, se_prompt) * unit


def crossed_bounds(tables: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high), each [...], of tables [..., S, P]: the grand mean +- :func:`crossed_half_width` of its
    :func:`crossed_components`. Vectorised over the leading axes, so a simulation checks thousands at once."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tables = np.asarray(tables, dtype=np.float64)
    se_seed, se_prompt, df = crossed_components(tables)
    mean = tables.mean(axis=(-2, -1))
    half = crossed_half_width(se_seed, se_prompt, df, confidence)
    return mean, mean - half, mean + half


def crossed_interval(groups: Sequence[Sequence[float]], confidence: float = 0.95) -> Interval:
    """The grand mean of ``groups`` (S seeds x the same P prompts) with its crossed interval (:func:`crossed_bounds`).

    ``Interval.n`` counts the seeds. Deterministic. Constant values give a zero-width interval; two seeds at 0 and 1
    (constant within) give 0.5 +- t_{0.975, 1} * 0.5 = 0.5 +- 6.353.
    """
    table = crossed_table(groups)
    mean, low, high = crossed_bounds(table, confidence)
    return Interval(float(mean), float(low), float(high), int(table.shape[0]))


def crossed_p_value(groups: Sequence[Sequence[float]]) -> float:
    """Two-sided p-value of "the grand mean is 0": 1 - central_probability(|mean|) (1.0 for an all-zero table, 0.0
    for a constant non-zero one)."""
    table = crossed_table(groups)
    se_seed, se_prompt, df = crossed_components(table)
    mean = abs(float(table.mean()))
    if se_seed == 0 and se_prompt == 0:
        return 1.0 if mean == 0 else 0.0
    return float(max(1.0 - central_probability(mean, se_seed, se_prompt, df), 0.0))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values [m] of ``p_values`` [m], in their order: sorted ascending, the i-th
    smallest (from 0) is multiplied by m - i, made non-decreasing, capped at 1. Rejecting where the adjusted value
    is below alpha keeps the family-wise error rate at alpha. Holm(0.01, 0.04, 0.03) = (0.03, 0.06, 0.06)."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (p.size - np.arange(p.size))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted.tolist()


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
