"""The cost frontier of a tournament with a budget axis (``--budget N``, rlhf/tournament/budget.py): each method's
gold score, judge-RM score and KL at each of its checkpoints, against the training seconds and FLOPs its run had
spent (evaluate.py's ``checkpoints``, rlhf/evaluation/checkpoints.py), over seeds.

Every seed's evaluation scored the same held-out prompts at every checkpoint, so a method at budget level j is S
arrays [P] of per-prompt values, as a method is in the main report, and gets the same hierarchical bootstrap over
seeds and prompts (rlhf/tournament/stats.py). Each curve starts at the base model (0 seconds: no training).

    levels          per method, per budget level: mean seconds and FLOPs over seeds, each score's interval
    equal_seconds   gold (judge RM without gold) at common training seconds, each seed's curve interpolated
                    linearly between its two bracketing checkpoints, prompt by prompt, then the same bootstrap
    plateau         per method, the smallest budget no later budget beats with confidence (paired per seed and
                    prompt): beyond it more compute stopped helping; None when a later budget still helped
"""

from __future__ import annotations

import numpy as np

from rlhf.tournament.collect import read_samples
from rlhf.tournament.plan import EVALUATE, SAMPLES, Plan
from rlhf.tournament.stats import crossed_interval, paired_differences

SCORES = {"gold": "gold", "judge": "rm", "kl": "kl"}  # report name -> samples.jsonl key
EQUAL_POINTS = 4  # common seconds at which the methods are compared: 1/4 .. 4/4 of the range all of them cover


def _levels_of_seed(results: dict, rows: list[dict], method: str) -> list[dict]:
    """One seed's trajectory of ``method``: per checkpoint (the final last) its step, seconds, FLOPs and per-prompt
    scores [P]; empty where the evaluation scored no checkpoints or a point lacks its cost."""
    points = sorted((c for c in results.get("checkpoints", []) if c["policy"] == method), key=lambda c: c["step"])
    out = []
    for point in points:
        if "train_seconds" not in point:
            return []

        def values(key: str, point=point) -> np.ndarray | None:
            if point["final"]:
                got = [row[method].get(key) for row in rows]
            else:
                got = [row.get("checkpoints", {}).get(method, {}).get(str(point["step"]), {}).get(key) for row in rows]
            return None if any(v is None for v in got) else np.asarray(got, dtype=np.float64)

        scores = {name: values(key) for name, key in SCORES.items()}
        out.append({"step": point["step"], "seconds": point["train_seconds"], "flops": point["train_flops"], **scores})
    return out


def _interval(groups: list[np.ndarray | None], boot: dict) -> dict | None:
    return None if any(g is None for g in groups) else crossed_interval(groups, boot["confidence"]).as_dict()


def _interpolate(curve: list[dict], at: float, score: str) -> np.ndarray:
    """A seed's per-prompt ``score`` at ``at`` seconds: linear between the bracketing points of ``curve`` (which
    starts at the base, 0 s, and rises in seconds)."""
    seconds = [p["seconds"] for p in curve]
    i = min(int(np.searchsorted(seconds, at, side="right")) - 1, len(curve) - 2)
    weight = (at - seconds[i]) / max(seconds[i + 1] - seconds[i], 1e-12)
    return (1 - weight) * curve[i][score] + weight * curve[i + 1][score]


def cost_frontier(plan: Plan, evaluations: dict[int, dict], methods: list[str], boot: dict) -> dict | None:
    """report.json's ``cost_frontier`` (the module docstring), or None when no evaluation scored checkpoints."""
    rows = {seed: read_samples(plan.job_dir(EVALUATE, seed) / SAMPLES) for seed in plan.seeds}
    base_name = evaluations[plan.seeds[0]].get("base")
    curves: dict[str, list[list[dict]]] = {}  # method -> per seed: [base point, level 1, ..., level J]
    for method in methods:
        per_seed = [_levels_of_seed(evaluations[s], rows[s], method) for s in plan.seeds]
        if not all(per_seed) or len({len(levels) for levels in per_seed}) != 1:
            continue  # no checkpoints scored, or seeds saved different numbers of them
        for seed, levels in zip(plan.seeds, per_seed):
            base = {name: _base_values(rows[seed], base_name, key) for name, key in SCORES.items()}
            levels.insert(0, {"step": 0, "seconds": 0.0, "flops": 0.0, **base})
        curves[method] = per_seed
    if not curves:
        return None
    main = "gold" if all(p["gold"] is not None for c in curves.values() for seed in c for p in seed) else "judge"
    levels = {
        method: [
            {
                "step": per_seed[0][j]["step"],
                "budget": j,  # 0: the base; j: j x the default length
                "train_seconds": float(np.mean([seed[j]["seconds"] for seed in per_seed])),
                "train_flops": float(np.mean([seed[j]["flops"] for seed in per_seed])),
                **{name: _interval([seed[j][name] for seed in per_seed], boot) for name in SCORES},
            }
            for j in range(len(per_seed[0]))
        ]
        for method, per_seed in curves.items()
    }
    common = min(seed[-1]["seconds"] for per_seed in curves.values() for seed in per_seed)
    equal = [
        {
            "train_seconds": at,
            **{
                m: crossed_interval([_interpolate(c, at, main) for c in per_seed], boot["confidence"]).as_dict()
                for m, per_seed in curves.items()
            },
        }  # fmt: skip
        for at in (common * k / EQUAL_POINTS for k in range(1, EQUAL_POINTS + 1))
    ]
    return {
        "score": main,
        "levels": levels,
        "equal_seconds": equal,
        "plateau": {m: plateau(per_seed, main, boot) for m, per_seed in curves.items()},
    }


def _base_values(rows: list[dict], base: str | None, key: str) -> np.ndarray | None:
    """The base model's per-prompt ``key`` (KL: 0, the base is its own reference); None without a base."""
    if key == "kl":
        return np.zeros(len(rows))
    if base is None or any(row.get(base, {}).get(key) is None for row in rows):
        return None
    return np.asarray([row[base][key] for row in rows], dtype=np.float64)


def plateau(per_seed: list[list[dict]], score: str, boot: dict) -> dict:
    """The smallest budget level j >= 1 that no later level beats with confidence (the interval of level j' minus
    level j, paired per seed and prompt, reaches 0 or below for every j' > j): ``{"budget": j, "train_seconds"}``,
    or ``{"budget": None}`` when even the last level beat an earlier one with confidence (still helping)."""
    last = len(per_seed[0]) - 1
    for j in range(1, last):
        gains = [
            crossed_interval(
                paired_differences([s[later][score] for s in per_seed], [s[j][score] for s in per_seed]),
                boot["confidence"],
            )
            for later in range(j + 1, last + 1)
        ]
        if all(g.low <= 0 for g in gains):
            return {"budget": j, "train_seconds": float(np.mean([s[j]["seconds"] for s in per_seed]))}
    return {"budget": None, "train_seconds": None}
