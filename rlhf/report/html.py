"""report.html: one self-contained page (inline CSS, plots as base64 PNG, no scripts, nothing fetched) with a
panel per view: the ranked jobs, curves by algorithm, curves by each swept hyperparameter, parallel
coordinates, and evaluate.py's results with their intervals.

Each panel is a ``<section>`` with a stable id (PANELS), so tests and links can find it.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from rlhf.report import plots
from rlhf.report.data import by_algorithm, curve_keys, hyperparameters, metric_value, rank_jobs
from rlhf.report.tables import evaluation_caption, evaluation_rows, ranking_rows

REPORT_HTML = "report.html"
PANELS = {
    "ranking": "Ranked jobs",
    "curves-by-algorithm": "Training curves by algorithm",
    "curves-by-hyperparameter": "Training curves by swept hyperparameter",
    "parallel-coordinates": "Hyperparameters against the metric",
    "evaluation": "Evaluation results",
}
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
nav a { margin-right: 1em; } .note { color: #666; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; } tr.best td { background: #eaf6ea; font-weight: 600; } tr.failed td { color: #a33; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 13px; } img { max-width: 100%; height: auto; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def slug(name: str) -> str:
    """An id-safe form of a hyperparameter or algorithm name (``algo.learning_rate`` stays as it is)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "x"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _figure(figure_id: str, png: bytes, caption: str) -> str:
    return f'<figure id="{_e(figure_id)}">{_img(png, caption)}<figcaption>{_e(caption)}</figcaption></figure>'


def _table(columns: list[str], rows: list[list[str]], row_classes: list[str] | None = None, table_id="") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _section(panel: str, body: str) -> str:
    return f'<section id="{panel}"><h2>{_e(PANELS[panel])}</h2>\n{body}\n</section>'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def ranking_panel(ranked: list[dict], metric: str, minimize: bool, params: dict) -> str:
    """The ranked table, best first; the best row and failed jobs marked."""
    columns, rows = ranking_rows(ranked, metric, params)
    classes = []
    for i, job in enumerate(ranked):
        finished = job["summary"].get("status") == "finished"
        classes.append("best" if i == 0 and metric_value(job, metric) is not None else "" if finished else "failed")
    order = "lowest" if minimize else "highest"
    return _note(f"Ranked by {metric}, {order} first; jobs without it last.") + _table(
        columns, rows, classes, "ranking-table"
    )


def curves_by_algorithm_panel(jobs: list[dict]) -> str:
    """Per algorithm, one subplot per curve it logged, every job overlaid."""
    parts = []
    for algo, group in by_algorithm(jobs).items():
        keys = curve_keys(group)
        if not keys:
            parts.append(_note(f"{algo}: no job logged a training curve (metrics.jsonl)."))
            continue
        title = f"algo={algo}: {len(group)} jobs"
        parts.append(_figure(f"curves-algo-{slug(algo)}", plots.curves_by_job(group, keys, title), title))
    return "\n".join(parts)


def curves_by_hyperparameter_panel(jobs: list[dict], params: dict) -> str:
    """Per swept hyperparameter, every job's curves coloured by its value of it."""
    if not params:
        return _note("No swept hyperparameter: every job has the same overrides.")
    keys = curve_keys(jobs)
    if not keys:
        return _note("No job logged a training curve (metrics.jsonl).")
    parts = []
    for name, values in params.items():
        caption = f"{name}: " + ", ".join(sorted(set(values.values())))
        parts.append(_figure(f"curves-param-{slug(name)}", plots.curves_by_value(jobs, keys, name, values), caption))
    return "\n".join(parts)


def parallel_panel(jobs: list[dict], params: dict, metric: str, minimize: bool) -> str:
    """The swept hyperparameters and the metric as parallel axes, one line per scored job."""
    scored = sum(metric_value(job, metric) is not None for job in jobs)
    if not scored:
        return _note(f"No finished job has {metric}: nothing to draw.")
    left_out = len(jobs) - scored
    caption = f"Axes: {', '.join(params) or 'no swept hyperparameter'}, then {metric}; numbers by value "
    caption += "(log scale when they span 20x or more), other values evenly in name order"
    caption += f"; {left_out} job(s) without {metric} left out." if left_out else "."
    png = plots.parallel_coordinates(jobs, params, metric, minimize)
    return _figure("parallel-coordinates-plot", png, caption)


def evaluation_panel(results: list[tuple[Path, dict]], directory: Path) -> str:
    """Each results.json as its table of metrics with intervals, then its plots."""
    parts = []
    for n, (path, result) in enumerate(results):
        where = path.parent.relative_to(directory) if path.parent != directory else Path(".")
        parts.append(f"<h3>{_e(where / path.name)}</h3>" + _note(evaluation_caption(result)))
        columns, rows = evaluation_rows(result)
        parts.append(_table(columns, rows, table_id=f"evaluation-table-{n}"))
        for plot in result.get("plots") or []:
            png = path.parent / plot
            if png.suffix == ".png" and png.is_file():
                parts.append(_figure(f"evaluation-plot-{n}-{slug(png.stem)}", png.read_bytes(), png.stem))
    return "\n".join(parts)


def render(
    directory: Path,
    jobs: list[dict],
    metric: str | None,
    minimize: bool,
    results: list[tuple[Path, dict]],
    wandb_url: str | None = None,
) -> str:
    """The whole page: header, then the job panels when there are jobs and the evaluation panel when there
    are results."""
    directory = Path(directory)
    sections = []
    if jobs:
        params = hyperparameters(jobs)
        ranked = rank_jobs(jobs, metric, minimize)
        sections += [
            _section("ranking", ranking_panel(ranked, metric, minimize, params)),
            _section("curves-by-algorithm", curves_by_algorithm_panel(jobs)),
            _section("curves-by-hyperparameter", curves_by_hyperparameter_panel(jobs, params)),
            _section("parallel-coordinates", parallel_panel(jobs, params, metric, minimize)),
        ]
    if results:
        sections.append(_section("evaluation", evaluation_panel(results, directory)))
    finished = sum(job["summary"].get("status") == "finished" for job in jobs)
    facts = [f"{directory.resolve()}", f"{len(jobs)} jobs ({finished} finished)"] if jobs else [str(directory)]
    facts += [f"{len(results)} evaluation(s)"] if results else []
    link = f'<p>W&amp;B report: <a href="{_e(wandb_url)}">{_e(wandb_url)}</a></p>' if wandb_url else ""
    nav = " ".join(f'<a href="#{s}">{_e(PANELS[s])}</a>' for s in PANELS if f'<section id="{s}">' in "".join(sections))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(directory.name)}: report</title>'
        f"<style>{STYLE}</style></head><body>\n"
        f"<h1>{_e(directory.name)}</h1>\n<p>{_e('; '.join(facts))}</p>\n{link}<nav>{nav}</nav>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def write_report(directory: Path, jobs, metric, minimize, results, wandb_url: str | None = None) -> Path:
    """Write report.html into the directory; returns its path."""
    out = Path(directory) / REPORT_HTML
    out.write_text(render(directory, jobs, metric, minimize, results, wandb_url), encoding="utf-8")
    return out
