"""What a report reads: the run directories of a sweep (or any folder of runs), their ranking, the swept
hyperparameters, the curves they logged, and evaluate.py's results.json files found there."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import yaml

from rlhf.errors import ConfigError, DataError
from rlhf.run.directions import direction

# The first of these any job logged is curves.png's curve (compare.md's companion).
CURVE_KEYS = ("loss", "objective/scores", "objective/rlhf_reward")
# The training curves the HTML and W&B reports plot, in this order, where any job logged them (rm, sft, dpo,
# ppo); bookkeeping such as learning_rate, epoch or num_tokens is left out.
PLOT_KEYS = (
    *CURVE_KEYS,
    "objective/kl",
    "objective/gold_score",
    "rewards/accuracies",
    "rewards/margins",
    "accuracy",
    "margin",
    "mean_token_accuracy",
    "entropy",
    "grad_norm",
)
RESULTS_JSON = "results.json"  # evaluate.py's (rlhf.evaluation.run.RESULTS_JSON)
log = logging.getLogger(__name__)
MISSING = "–"  # a hyperparameter a job neither overrode nor has in its config


def _read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file; a last line a kill cut short is dropped (as a resume drops it), with a
    warning naming the file. A damaged line before the last is a DataError naming the file and the line."""
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number < len(lines):
                raise DataError(f"{path}:{number} is not valid JSON ({err.msg}); repair or remove that run") from None
            log.warning("%s: dropped its torn last line %d (a run killed while writing it)", path, number)
    return rows


def _read_summary(job_dir: Path) -> dict | None:
    """A run's summary.json, or None (with a warning naming it) when it does not parse: that run is left out."""
    path = job_dir / "summary.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        log.warning("skipped %s: its summary.json is damaged (%s)", job_dir, err)
        return None


def _read_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def find_jobs(directory: Path) -> list[dict]:
    """One record per run directory (a child with summary.json), in name order; [] when there is none.

    A record: name, dir, overrides, status-bearing summary, metrics rows, config, algo, optimized metric name.
    """
    jobs = []
    for job_dir in sorted(p for p in Path(directory).iterdir() if (p / "summary.json").is_file()):
        summary = _read_summary(job_dir)
        if summary is None:
            continue
        config = _read_yaml(job_dir / ".hydra" / "config.yaml") or {}
        jobs.append(
            {
                "name": job_dir.name,
                "dir": job_dir,
                "overrides": _read_yaml(job_dir / ".hydra" / "overrides.yaml") or [],
                "summary": summary,
                "metrics": _read_jsonl(job_dir / "metrics.jsonl"),
                "config": config,
                "algo": summary.get("algo") or (config.get("algo") or {}).get("name") or "?",
                "optimized_metric": config.get("optimized_metric"),
            }
        )
    return jobs


def collect_jobs(sweep_dir: Path) -> list[dict]:
    """find_jobs, refusing a directory without run directories (a mistyped sweep path)."""
    jobs = find_jobs(sweep_dir)
    if not jobs:
        raise ConfigError(
            f"{sweep_dir}: no job directories with summary.json; give a multirun_sweeps/<timestamp> directory"
        )
    return jobs


def default_metric(jobs: list[dict]) -> str:
    """The metric the jobs were optimising (their config's optimized_metric), else eval_accuracy."""
    return next((j["optimized_metric"] for j in jobs if j["optimized_metric"]), "eval_accuracy")


def resolve_minimize(metric: str, minimize: bool | None) -> bool:
    """An explicit direction wins; else the metric's own (losses low, accuracies high: rlhf.run.directions)."""
    return direction(metric) == "minimize" if minimize is None else minimize


def metric_value(job: dict, metric: str) -> float | None:
    """The job's finite value of ``metric`` when it finished, else None (failed, stopped, or never logged)."""
    value = job["summary"].get(metric)
    usable = job["summary"].get("status") == "finished" and isinstance(value, (int, float)) and math.isfinite(value)
    return float(value) if usable else None


def rank_jobs(jobs: list[dict], metric: str, minimize: bool | None = None) -> list[dict]:
    """Finished jobs with the metric first, best first; failed or metric-less jobs last, in name order.

    ``minimize`` None takes the metric's direction (an unknown metric name is a ConfigError naming the fix).
    """
    minimize = resolve_minimize(metric, minimize)

    def key(job):
        value = metric_value(job, metric)
        return (1, 0, job["name"]) if value is None else (0, value if minimize else -value, job["name"])

    return sorted(jobs, key=key)


def swept_overrides(jobs: list[dict]) -> dict[str, list[str]]:
    """Per job, only the overrides that differ between jobs (what the sweep varied)."""
    shared = set.intersection(*(set(j["overrides"]) for j in jobs)) if jobs else set()
    return {j["name"]: [o for o in j["overrides"] if o not in shared] for j in jobs}


def _override_key(override: str) -> str | None:
    # "+algo.x=1" and "algo.x=1" name the same setting; "~key" (a deletion) sets no value.
    return override.split("=", 1)[0].lstrip("+~") if "=" in override else None


def config_path(name: str, config: dict) -> str:
    """Where an override's value lives in the resolved config: a group choice (``lora=r8``) is its ``name``."""
    node = config.get(name) if "." not in name else None
    return f"{name}.name" if isinstance(node, dict) and "name" in node else name


def config_value(config: dict, path: str):
    """The value at a dotted path of a nested config, or None."""
    node = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def hyperparameters(jobs: list[dict]) -> dict[str, dict[str, str]]:
    """Each swept setting (an override key whose value differs between jobs) -> job name -> its value.

    A job that did not override it shows its config's value, or MISSING.
    """
    names = []
    for overrides in swept_overrides(jobs).values():
        names += [k for k in map(_override_key, overrides) if k and k not in names]
    table = {}
    for name in names:
        values = {}
        for job in jobs:
            given = [o.split("=", 1)[1] for o in job["overrides"] if _override_key(o) == name]
            fallback = config_value(job["config"], config_path(name, job["config"]))
            values[job["name"]] = given[-1] if given else (MISSING if fallback is None else str(fallback))
        if len(set(values.values())) > 1:  # an override spelled two ways with one value is not a sweep axis
            table[name] = values
    return table


def as_number(value: str) -> float | None:
    """A hyperparameter's value as a float when it is one (``0.0001``, ``16``), else None (``r8``, ``true``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def series(job: dict, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metrics.jsonl key, skipping rows without a finite number for it."""
    points = [
        (row["step"], row[key])
        for row in job["metrics"]
        if isinstance(row.get(key), (int, float)) and not isinstance(row.get(key), bool) and math.isfinite(row[key])
    ]
    return ([s for s, _ in points], [v for _, v in points]) if points else ([], [])


def curve_keys(jobs: list[dict]) -> list[str]:
    """The PLOT_KEYS any of the jobs logged, in PLOT_KEYS order."""
    return [k for k in PLOT_KEYS if any(series(job, k)[0] for job in jobs)]


def by_algorithm(jobs: list[dict]) -> dict[str, list[dict]]:
    """Jobs grouped by their algorithm, in order of first appearance."""
    groups: dict[str, list[dict]] = {}
    for job in jobs:
        groups.setdefault(job["algo"], []).append(job)
    return groups


def find_results(directory: Path) -> list[tuple[Path, dict]]:
    """Every evaluate.py results.json in the directory or one level below it (a job's, an evaluation's)."""
    directory = Path(directory)
    paths = [directory / RESULTS_JSON, *sorted(directory.glob(f"*/{RESULTS_JSON}"))]
    found = []
    for path in paths:
        if path.is_file():
            results = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(results, dict) and isinstance(results.get("policies"), dict):
                found.append((path, results))
    return found
