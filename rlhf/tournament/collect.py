"""What a tournament's report reads: each seed's evaluation (results.json and the per-prompt scores of
samples.jsonl) and each training job's summary.json, gathered per method and per seed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlhf.errors import ConfigError
from rlhf.run.rundir import SUMMARY
from rlhf.tournament.plan import EVALUATE, RESULTS, SAMPLES, Plan

CHOSEN = "chosen"  # the dataset's chosen responses: a yardstick, scored as a method is


@dataclass
class Scores:
    """One method's per-prompt values over the seeds: S arrays [P] each (``gold`` None without a gold judge,
    ``kl`` None for the dataset's chosen responses)."""

    judge: list[np.ndarray]
    gold: list[np.ndarray] | None
    kl: list[np.ndarray] | None


@dataclass
class Collected:
    """Everything the report uses: ``methods`` in the evaluations' order (base first), the chosen responses,
    each seed's results.json, and each training stage's summaries by seed ({} for a job without one)."""

    plan: Plan
    methods: dict[str, Scores]
    chosen: Scores
    evaluations: dict[int, dict]
    runs: dict[str, dict[int, dict]]

    @property
    def gold(self) -> bool:
        return self.chosen.gold is not None


def read_samples(path: Path) -> list[dict]:
    """samples.jsonl's rows (one per prompt, every policy's scores under its name), in prompt order."""
    if not path.is_file():
        raise ConfigError(
            f"{path} is missing: the report needs each evaluation's per-prompt scores; delete {path.parent} and "
            f"continue the tournament (--resume) to evaluate that seed again"
        )
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted(rows, key=lambda row: row.get("index", 0)) if all("index" in r for r in rows) else rows


def _column(rows: list[dict], name: str | None, key: str) -> np.ndarray | None:
    """[P] values of ``key`` for policy ``name`` (None: the row's own ``chosen_<key>``); None where absent."""
    values = [(row.get(f"chosen_{key}") if name is None else row.get(name, {}).get(key)) for row in rows]
    return None if any(v is None for v in values) else np.asarray(values, dtype=np.float64)


def _evaluation(plan: Plan, seed: int) -> tuple[dict, list[dict]]:
    directory = plan.job_dir(EVALUATE, seed)
    path = directory / RESULTS
    if not path.is_file():
        raise ConfigError(f"{path} is missing: the evaluation of seed {seed} did not finish; continue with --resume")
    return json.loads(path.read_text(encoding="utf-8")), read_samples(directory / SAMPLES)


def collect(plan: Plan) -> Collected:
    """Read the tournament's evaluations and run summaries (every seed's evaluation must have finished)."""
    evaluations, rows = {}, {}
    for seed in plan.seeds:
        evaluations[seed], rows[seed] = _evaluation(plan, seed)
    names = list(evaluations[plan.seeds[0]]["policies"])
    for seed, results in evaluations.items():
        if list(results["policies"]) != names:
            raise ConfigError(
                f"the evaluation of seed {seed} compared {', '.join(results['policies'])}, seed {plan.seeds[0]}'s "
                f"{', '.join(names)}: every seed must compare the same methods; evaluate it again"
            )
    gold = bool(evaluations[plan.seeds[0]].get("gold"))

    def scores(name: str | None) -> Scores:
        per_seed = {key: [_column(rows[s], name, key) for s in plan.seeds] for key in ("rm", "gold", "kl")}
        missing = [s for s, values in zip(plan.seeds, per_seed["rm"]) if values is None]
        if missing:
            raise ConfigError(
                f"samples.jsonl of seed {missing[0]} has no judge score for {name or CHOSEN} on every prompt: "
                "evaluate that seed again"
            )
        return Scores(
            per_seed["rm"],
            per_seed["gold"] if gold and all(v is not None for v in per_seed["gold"]) else None,
            None if name is None else per_seed["kl"],
        )

    runs = {stage: {seed: _summary(plan.job_dir(stage, seed)) for seed in plan.seeds} for stage in plan.training_stages}
    return Collected(plan, {name: scores(name) for name in names}, scores(None), evaluations, runs)


def _summary(run_dir: Path) -> dict:
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
