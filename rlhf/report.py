"""Compare the jobs of a sweep (or any run directories) without W&B: a ranked table and overlaid curves.

    python -m rlhf.report multirun_sweeps/<timestamp> [--metric eval_accuracy] [--minimize] [--curve loss]

Writes ``compare.md`` and ``curves.png`` into the sweep directory and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import yaml

from rlhf.errors import ConfigError

CURVE_KEYS = ("loss", "objective/scores", "objective/rlhf_reward")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def collect_jobs(sweep_dir: Path) -> list[dict]:
    """One record per job directory: name, overrides, status, summary, metrics rows, optimized metric name."""
    jobs = []
    for job_dir in sorted(p for p in Path(sweep_dir).iterdir() if (p / "summary.json").is_file()):
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        config_file = job_dir / ".hydra" / "config.yaml"
        config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
        jobs.append(
            {
                "name": job_dir.name,
                "overrides": yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else [],
                "summary": json.loads((job_dir / "summary.json").read_text()),
                "metrics": _read_jsonl(job_dir / "metrics.jsonl"),
                "optimized_metric": (config or {}).get("optimized_metric"),
            }
        )
    if not jobs:
        raise ConfigError(
            f"{sweep_dir}: no job directories with summary.json; give a multirun_sweeps/<timestamp> directory"
        )
    return jobs


def rank_jobs(jobs: list[dict], metric: str, minimize: bool = False) -> list[dict]:
    """Finished jobs with the metric first, best first; failed or metric-less jobs last, in name order."""

    def key(job):
        value = job["summary"].get(metric)
        usable = job["summary"].get("status") == "finished" and isinstance(value, (int, float)) and math.isfinite(value)
        return (0, value if minimize else -value, job["name"]) if usable else (1, 0, job["name"])

    return sorted(jobs, key=key)


def swept_overrides(jobs: list[dict]) -> dict[str, list[str]]:
    """Per job, only the overrides that differ between jobs (what the sweep varied)."""
    shared = set.intersection(*(set(j["overrides"]) for j in jobs)) if jobs else set()
    return {j["name"]: [o for o in j["overrides"] if o not in shared] for j in jobs}


def markdown_table(ranked: list[dict], metric: str) -> str:
    varied = swept_overrides(ranked)
    lines = [
        f"| rank | job | overrides | status | {metric} | wall_time_s | peak_rss_mb |",
        "|---|---|---|---|---|---|---|",
    ]
    for rank, job in enumerate(ranked, start=1):
        s = job["summary"]
        value = s.get(metric)
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "–"
        status = (
            s.get("status", "?") if s.get("status") == "finished" else f"{s.get('status')}: {s.get('error', '')[:80]}"
        )
        lines.append(
            f"| {rank} | {job['name']} | {' '.join(varied[job['name']])} | {status} | {shown} "
            f"| {s.get('wall_time_s', '–')} | {s.get('peak_rss_mb', '–')} |"
        )
    return "\n".join(lines) + "\n"


def plot_curves(jobs: list[dict], key: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    varied = swept_overrides(jobs)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for job in jobs:
        points = [(row["step"], row[key]) for row in job["metrics"] if isinstance(row.get(key), (int, float))]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, marker=".", label=f"{job['name']}: {' '.join(varied[job['name']])}"[:60])
    ax.set_title(f"{key} per step, {len(jobs)} jobs")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(key)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def compare(
    sweep_dir: Path, metric: str | None = None, minimize: bool = False, curve: str | None = None
) -> tuple[str, Path | None]:
    """Write compare.md (and curves.png when any job logged the curve); returns the table and the plot path."""
    jobs = collect_jobs(sweep_dir)
    metric = metric or next((j["optimized_metric"] for j in jobs if j["optimized_metric"]), "eval_accuracy")
    table = markdown_table(rank_jobs(jobs, metric, minimize), metric)
    (Path(sweep_dir) / "compare.md").write_text(
        f"# Sweep {Path(sweep_dir).name}\n\nRanked by {metric} ({'min' if minimize else 'max'}).\n\n{table}"
    )
    curve = curve or next((k for k in CURVE_KEYS if any(k in row for j in jobs for row in j["metrics"])), None)
    plot = plot_curves(jobs, curve, Path(sweep_dir) / "curves.png") if curve else None
    return table, plot


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--metric", help="summary.json key to rank by (default: the jobs' optimized_metric)")
    parser.add_argument("--minimize", action="store_true", help="lower is better")
    parser.add_argument("--curve", help="metrics.jsonl key to plot (default: loss or the PPO score)")
    args = parser.parse_args(argv)
    try:
        table, plot = compare(args.sweep_dir, args.metric, args.minimize, args.curve)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    print(table, end="")
    print(f"wrote {args.sweep_dir / 'compare.md'}" + (f" and {plot}" if plot else " (no job logged a training curve)"))


if __name__ == "__main__":
    main()
