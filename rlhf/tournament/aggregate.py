"""The tournament's numbers (report.json's content) from what :func:`rlhf.tournament.collect.collect` read: per method
its scores, win rates and KL with crossed intervals over seeds and prompts (rlhf/tournament/stats.py), the paired
differences (each arm against base, arm against arm) with raw and Holm-adjusted p-values and the verdicts of the
adjusted ones, the training costs, and PPO's held-out points."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rlhf.evaluation.metrics import adjusted_verdict, comparison_pairs, pairwise_wins
from rlhf.tournament.collect import CHOSEN, Collected, Scores
from rlhf.tournament.frontier import cost_frontier
from rlhf.tournament.plan import ONLINE_ARMS
from rlhf.tournament.stats import crossed_interval, crossed_p_value, holm, paired_differences, seed_means

SCORES = ("gold", "judge")  # the gold judge first: where there is one, it is the ground truth
# summary.json's cost keys (rlhf/run/costs.py and rlhf/experiment.py), in the cost table's order
COST_KEYS = (
    "wall_time_s",
    "peak_rss_mb",
    "peak_cuda_mb",
    "episodes",
    "tokens_forwarded",
    "tokens_backpropagated",
)


def label(name: str) -> str:
    """How the report names a method: the arms in capitals (PPO, DPO), base and the chosen responses in words."""
    return {"base": "base", CHOSEN: "dataset chosen"}.get(name, name.upper())


def _per_seed(groups: list[np.ndarray] | None) -> list[float] | None:
    return None if groups is None else [float(m) for m in seed_means(groups)]


def interval(groups: list[np.ndarray] | None, boot: dict) -> dict | None:
    """The crossed Interval (seeds x the same prompts) of per-seed values as a dict; None where there are none."""
    return None if groups is None else crossed_interval(groups, boot["confidence"]).as_dict()


def method_stats(scores: Scores, base: Scores | None, chosen: Scores, boot: dict) -> dict:
    """One method's row: mean score with its interval per judge, win rates against the chosen responses (and
    base, when given), KL; each an Interval dict; ``per_seed``: the per-seed means (the frontier's points)."""

    def wins(mine, theirs) -> dict | None:
        if mine is None or theirs is None:
            return None
        return interval([pairwise_wins(a, b) for a, b in zip(mine, theirs)], boot)

    row = {score: interval(getattr(scores, score), boot) for score in SCORES}
    row["kl"] = interval(scores.kl, boot)
    for score in SCORES:
        row[f"win_vs_chosen_{score}"] = wins(getattr(scores, score), getattr(chosen, score))
        if base is not None:
            row[f"win_vs_base_{score}"] = wins(getattr(scores, score), getattr(base, score))
    row["per_seed"] = {score: _per_seed(getattr(scores, score)) for score in (*SCORES, "kl")}
    return row


def differences(collected: Collected, base: str | None, boot: dict) -> list[dict]:
    """Every arm minus every earlier arm (PPO - DPO), then every arm minus base, on each score: the mean paired
    difference with its crossed interval, its raw p-value, the Holm-adjusted p-value over the whole family (every
    row of this list) and the verdict of the adjusted one (rlhf.evaluation.metrics.adjusted_verdict)."""
    rows = []
    for a, b in comparison_pairs(list(collected.methods), base):
        for score in SCORES:
            mine, theirs = getattr(collected.methods[a], score), getattr(collected.methods[b], score)
            if mine is None or theirs is None:
                continue
            diffs = paired_differences(mine, theirs)
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "score": score,
                    "difference": crossed_interval(diffs, boot["confidence"]).as_dict(),
                    "p": crossed_p_value(diffs),
                }
            )
    for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adjusted
        row["verdict"] = adjusted_verdict(row["difference"]["mean"], adjusted, label(row["a"]), label(row["b"]),
                                          boot["confidence"])  # fmt: skip
    return rows


def _mean(values: list) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return float(np.mean(numbers)) if numbers else None


def costs(collected: Collected) -> dict[str, dict]:
    """Per training stage (and the evaluation), each cost key's mean over the seeds that recorded it (None where
    none did), the mean seconds per phase, and the per-seed values."""
    out = {}
    sources = dict(collected.runs)
    sources["evaluate"] = collected.evaluations
    for stage, by_seed in sources.items():
        row = {key: _mean([s.get(key) for s in by_seed.values()]) for key in COST_KEYS}
        phases = sorted({p for s in by_seed.values() for p in (s.get("phase_seconds") or {})})
        row["phase_seconds"] = {
            p: _mean([(s.get("phase_seconds") or {}).get(p) for s in by_seed.values()]) for p in phases
        }
        row["per_seed"] = {seed: {key: s.get(key) for key in COST_KEYS} for seed, s in by_seed.items()}
        out[stage] = row
    return out


def held_out_points(collected: Collected) -> list[dict]:
    """The online arms' own held-out evaluations at the start and end of training (summary.json's
    ``<metric>_start`` / ``_final``): extra points of the frontier. ``judge_comparable``: that run's reward model is
    the evaluation's judge, so its rm_score sits on the judge-score axis."""
    points = []
    for arm in (a for a in collected.plan.arms if a in ONLINE_ARMS):
        for seed, summary in collected.runs.get(arm, {}).items():
            if "kl_final" not in summary:
                continue
            judge_dir = (collected.evaluations[seed].get("judge") or {}).get("run_dir")
            reward_model = summary.get("reward_model")
            comparable = bool(judge_dir and reward_model and Path(judge_dir).resolve() == Path(reward_model).resolve())
            for when in ("start", "final"):
                points.append(
                    {
                        "method": arm,
                        "seed": seed,
                        "when": when,
                        "kl": summary.get(f"kl_{when}"),
                        "judge": summary.get(f"rm_score_{when}"),
                        "gold": summary.get(f"gold_score_{when}"),
                        "judge_comparable": comparable,
                    }
                )
    return points


def aggregate(collected: Collected) -> dict:
    """report.json's content."""
    plan = collected.plan
    first = collected.evaluations[plan.seeds[0]]
    settings = first.get("settings") or {}
    boot = {"confidence": float(settings.get("confidence", 0.95))}
    base_name = first.get("base")
    base = collected.methods.get(base_name) if base_name else None
    methods = {
        name: method_stats(scores, None if name == base_name else base, collected.chosen, boot)
        for name, scores in collected.methods.items()
    }
    chosen = {score: interval(getattr(collected.chosen, score), boot) for score in SCORES}
    return {
        "directory": str(plan.directory),
        "seeds": list(plan.seeds),
        "arms": list(plan.arms),
        "overrides": list(plan.overrides),
        "stage_overrides": {k: list(v) for k, v in plan.stage_overrides.items()},
        "dataset": plan.dataset,
        "model": first.get("model"),
        "gold": collected.gold,
        "judge": plan.judge_from,
        "prompts": [int(collected.chosen.judge[i].size) for i in range(len(plan.seeds))],
        "confidence": boot["confidence"],
        "interval": "crossed t (seeds x prompts; rlhf/tournament/stats.py)",
        "family": "every row of differences (Holm)",
        "base": base_name,
        "methods": methods,
        "chosen": chosen,
        "differences": differences(collected, base_name, boot),
        "costs": costs(collected),
        "held_out": held_out_points(collected),
        # --budget: each arm's checkpoints against their training cost (None: no checkpoints scored)
        "cost_frontier": cost_frontier(plan, collected.evaluations, list(plan.arms), boot),
    }
