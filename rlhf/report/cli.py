"""compare() and the command line of ``python -m rlhf.report`` (the package docstring says what it writes)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlhf.errors import ConfigError, RlhfError
from rlhf.report.data import (
    CURVE_KEYS,
    collect_jobs,
    default_metric,
    find_jobs,
    find_results,
    rank_jobs,
    resolve_minimize,
    swept_overrides,
)
from rlhf.report.html import write_report
from rlhf.report.plots import plot_curves
from rlhf.report.tables import markdown_table

__all__ = ["collect_jobs", "compare", "main", "markdown_table", "plot_curves", "rank_jobs", "swept_overrides"]
OFFLINE = "W&B is offline: wrote report.html only"


def compare(
    sweep_dir: Path,
    metric: str | None = None,
    minimize: bool | None = None,
    curve: str | None = None,
    wandb_url: str | None = None,
) -> tuple[str, Path | None]:
    """Write compare.md (and curves.png when any job logged the curve); returns the table and the plot path.

    ``minimize`` None ranks in the metric's own direction (rlhf.run.directions).
    """
    jobs = collect_jobs(sweep_dir)
    metric = metric or default_metric(jobs)
    minimize = resolve_minimize(metric, minimize)
    table = markdown_table(rank_jobs(jobs, metric, minimize), metric)
    link = f"W&B report: {wandb_url}\n\n" if wandb_url else ""
    (Path(sweep_dir) / "compare.md").write_text(
        f"# Sweep {Path(sweep_dir).name}\n\nRanked by {metric} ({'min' if minimize else 'max'}).\n\n{link}{table}"
    )
    curve = curve or next((k for k in CURVE_KEYS if any(k in row for j in jobs for row in j["metrics"])), None)
    plot = plot_curves(jobs, curve, Path(sweep_dir) / "curves.png") if curve else None
    return table, plot


def wandb_report(directory: Path, jobs: list[dict], metric: str, minimize: bool, results) -> str | None:
    """Save the W&B Report when W&B is online and the jobs logged to it; else say why in one line. Returns
    its URL, or None. W&B trouble never stops the HTML report."""
    from rlhf.run.tracking import wandb_key_found  # imports transformers: only for --wandb-report

    if not wandb_key_found():
        print(OFFLINE)
        return None
    from rlhf.report import wandb_report as report_wandb

    if not report_wandb.logged_to_wandb(jobs):
        print("no W&B runs to show (no run directories, or they ran with logger=none): wrote report.html only")
        return None
    unsynced = report_wandb.offline_runs(jobs)
    if unsynced:
        print(f"{len(unsynced)} W&B run(s) were logged offline; upload them for the report: wandb sync {unsynced[0]}")
    try:
        return report_wandb.save_report(directory, jobs, metric, minimize, results)
    except Exception as err:  # a server, permission or network failure
        first = (str(err).strip().splitlines() or [""])[0]  # wandb's messages can span lines
        print(f"W&B report not saved ({type(err).__name__}: {first}): wrote report.html only")
        return None


def report(
    directory: Path,
    metric: str | None = None,
    minimize: bool | None = None,
    curve: str | None = None,
    wandb: bool = False,
) -> dict:
    """Every output for a directory: compare.md and curves.png (run directories), report.html, and with
    ``wandb`` the W&B Report. Returns what was written: table, plot, html, wandb_url."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such directory; give a multirun_sweeps/<timestamp> directory")
    jobs, results = find_jobs(directory), find_results(directory)
    if not jobs and not results:
        collect_jobs(directory)  # its error names the fix
    metric = (metric or default_metric(jobs)) if jobs else metric
    minimize = resolve_minimize(metric, minimize) if jobs else bool(minimize)
    url = wandb_report(directory, jobs, metric, minimize, results) if wandb else None
    table, plot = compare(directory, metric, minimize, curve, url) if jobs else (None, None)
    html = write_report(directory, jobs, metric, minimize, results, url)
    return {"table": table, "plot": plot, "html": html, "wandb_url": url}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rlhf.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep, a folder of run directories, or one with results.json")
    parser.add_argument("--metric", help="summary.json key to rank by (default: the jobs' optimized_metric)")
    way = parser.add_mutually_exclusive_group()
    way.add_argument("--minimize", dest="minimize", action="store_const", const=True, help="lower is better")
    way.add_argument("--maximize", dest="minimize", action="store_const", const=False, help="higher is better")
    parser.add_argument("--curve", help="metrics.jsonl key of curves.png (default: loss or the PPO score)")
    parser.add_argument("--wandb-report", action="store_true", help="also save a W&B Report (when W&B is online)")
    args = parser.parse_args(argv)
    try:
        out = report(args.sweep_dir, args.metric, args.minimize, args.curve, args.wandb_report)
    except RlhfError as err:  # a config or a damaged file: one line
        raise SystemExit(f"error: {err}") from None
    written = [str(args.sweep_dir / "compare.md")] if out["table"] is not None else []
    written += [str(out["plot"])] if out["plot"] else []
    written.append(str(out["html"]))
    if out["table"] is not None:
        print(out["table"], end="")
    if out["wandb_url"]:
        print(f"W&B report: {out['wandb_url']}")
    print("wrote " + ", ".join(written) + ("" if out["plot"] or out["table"] is None else " (no training curve)"))
