"""The sweep's W&B Report: report.html's panels built with W&B's own report API (wandb-workspaces).

build_report only builds the Report object (no network: every panel can be checked offline); publish saves it,
which needs a W&B server and an API key, and save_report writes its URL into the sweep directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import wandb_workspaces.reports.v2 as wr
from wandb_workspaces import expr

from rlhf.report.data import by_algorithm, config_path, curve_keys, hyperparameters, rank_jobs
from rlhf.report.tables import evaluation_caption, evaluation_rows, markdown, markdown_table

LINK_FILE = "wandb_report.txt"  # the saved report's URL, beside compare.md and report.html
DEFAULT_PROJECT = "rlhf"  # conf/logger/wandb.yaml's project
FULL_WIDTH = 24  # a panel grid's width in W&B's layout units


@dataclass(frozen=True)
class Target:
    """Where the sweep's runs are in W&B: entity (None: the key's default entity), project and run group."""

    entity: str | None
    project: str
    group: str


def target(directory: Path, jobs: list[dict]) -> Target:
    """The jobs' W&B place as train.py set it: logger.entity/project, and the group logger.group or else the
    sweep directory's name (train.py's group in a multirun)."""
    logger = next((job["config"].get("logger") for job in jobs if job["config"].get("logger")), None) or {}
    return Target(
        entity=logger.get("entity"),
        project=logger.get("project") or DEFAULT_PROJECT,
        group=logger.get("group") or Path(directory).resolve().name,
    )


def logged_to_wandb(jobs: list[dict]) -> bool:
    """Whether any job ran with a W&B logger (logger=none jobs have no W&B runs to show)."""
    return any((job["config"].get("logger") or {}).get("name", "none") != "none" for job in jobs)


def offline_runs(jobs: list[dict]) -> list[Path]:
    """W&B runs the jobs logged offline (not on the server until ``wandb sync``)."""
    return sorted(run for job in jobs for run in (Path(job["dir"]) / "wandb").glob("offline-run-*"))


def runset(where: Target, entity: str, name: str, *filters, order: wr.OrderBy | None = None) -> wr.Runset:
    """The sweep's runs (its W&B group), narrowed by further filters."""
    return wr.Runset(
        entity=entity,
        project=where.project,
        name=name,
        filters=[expr.Metric("Group") == where.group, *filters],
        **({"order": [order]} if order is not None else {}),
    )


def build_report(
    directory: Path,
    jobs: list[dict],
    metric: str,
    minimize: bool,
    results: list[tuple[Path, dict]] = (),
    *,
    where: Target,
    entity: str,
) -> wr.Report:
    """The Report object, not saved: the ranked table and a run comparer, line plots per algorithm and per
    swept hyperparameter (grouped by its config value), a parallel-coordinates panel, and the evaluation tables.

    ``entity`` is explicit: wandb-workspaces would otherwise ask the server for the default one.
    """
    params = hyperparameters(jobs)
    first = jobs[0]["config"] if jobs else {}
    sweep = runset(where, entity, f"sweep {where.group}")
    order = "lowest" if minimize else "highest"
    blocks: list = [
        wr.P(
            text=f"{len(jobs)} jobs of {Path(directory).name} (W&B group {where.group}), ranked by {metric}, "
            f"{order} first. Written by python -m rlhf.report; report.html in the sweep directory has the same panels."
        ),
        wr.H2(text="Ranked jobs"),
        wr.MarkdownBlock(text=markdown_table(rank_jobs(jobs, metric, minimize), metric)),
        wr.PanelGrid(
            runsets=[runset(where, entity, "ranked", order=wr.OrderBy(wr.SummaryMetric(metric), ascending=minimize))],
            panels=[wr.RunComparer(diff_only="split", layout=wr.Layout(w=FULL_WIDTH, h=10))],
        ),
        wr.H2(text="Training curves by algorithm"),
    ]
    for algo, group in by_algorithm(jobs).items():
        keys = curve_keys(group)
        if keys:
            blocks += [
                wr.H3(text=f"algo={algo}"),
                wr.PanelGrid(
                    runsets=[runset(where, entity, f"algo={algo}", expr.Metric("JobType") == algo)],
                    panels=[wr.LinePlot(title=key, x="Step", y=[key]) for key in keys],
                ),
            ]
    blocks.append(wr.H2(text="Training curves by swept hyperparameter"))
    for name in params:
        blocks += [
            wr.H3(text=name),
            wr.PanelGrid(
                runsets=[sweep],
                panels=[
                    wr.LinePlot(
                        title=f"{key} by {name}",
                        x="Step",
                        y=[key],
                        groupby=wr.Config(config_path(name, first)),
                        groupby_aggfunc="mean",
                        groupby_rangefunc="minmax",
                    )
                    for key in curve_keys(jobs)
                ],
            ),
        ]
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(config_path(name, first))) for name in params]
    columns.append(wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(metric)))
    blocks += [
        wr.H2(text="Hyperparameters against the metric"),
        wr.PanelGrid(
            runsets=[sweep],
            panels=[
                wr.ParallelCoordinatesPlot(
                    title=f"swept hyperparameters against {metric}",
                    columns=columns,
                    layout=wr.Layout(w=FULL_WIDTH, h=9),
                )
            ],
        ),
    ]
    if results:
        blocks.append(wr.H2(text="Evaluation results"))
        for path, result in results:
            blocks += [
                wr.H3(text=str(path.relative_to(directory))),
                wr.P(text=evaluation_caption(result)),
                wr.MarkdownBlock(text=markdown(*evaluation_rows(result))),
            ]
    return wr.Report(
        project=where.project,
        entity=entity,
        title=f"Sweep {Path(directory).name}"[:128],
        description=f"{metric}: {order} is best",
        blocks=blocks,
        width="fluid",
    )


def default_entity() -> str:
    """The API key's default entity (asks the server)."""
    import wandb

    return wandb.Api().default_entity


def publish(report: wr.Report) -> str:
    """Save the report to the W&B server; returns its URL."""
    report.save()
    return report.url


def save_report(directory: Path, jobs: list[dict], metric: str, minimize: bool, results=()) -> str:
    """Build, save and link the report: its URL goes into <directory>/wandb_report.txt. Needs a server and key."""
    where = target(directory, jobs)
    report = build_report(
        directory, jobs, metric, minimize, results, where=where, entity=where.entity or default_entity()
    )
    url = publish(report)
    (Path(directory) / LINK_FILE).write_text(url + "\n", encoding="utf-8")
    return url
