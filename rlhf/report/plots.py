"""The report's figures as PNG: training curves per job or coloured by a hyperparameter's value, and a
parallel-coordinates plot of the swept hyperparameters against the optimised metric.

Figures are built on matplotlib's Figure directly (the Agg canvas, no pyplot state), so a report needs no
display and leaves the caller's matplotlib backend alone.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from rlhf.report.data import as_number, metric_value, series, swept_overrides

COLUMNS = 3  # subplots per row
MAX_LEGEND = 20  # more jobs than this: no legend (it would hide the curves)


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")  # "tight" keeps a legend placed below
    return buffer.getvalue()


def plot_curves(jobs: list[dict], key: str, out: Path) -> Path:
    """curves.png: one metrics.jsonl key per step, one line per job labelled with its swept overrides."""
    varied = swept_overrides(jobs)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for job in jobs:
        steps, values = series(job, key)
        if steps:
            ax.plot(steps, values, marker=".", label=f"{job['name']}: {' '.join(varied[job['name']])}"[:60])
    ax.set_title(f"{key} per step, {len(jobs)} jobs")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(key)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


def _grid(keys: list[str]) -> tuple[Figure, list]:
    """A figure with one subplot per key, COLUMNS to a row; unused cells hidden."""
    cols = min(COLUMNS, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.4 * cols, 3.1 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    return fig, list(axes[: len(keys)])


def _curves(
    jobs: list[dict], keys: list[str], colour: Callable[[dict], tuple], label: Callable[[dict], str], title: str
) -> bytes:
    """One subplot per key; each job a line in its colour; one legend entry per distinct label."""
    fig, axes = _grid(keys)
    for ax, key in zip(axes, keys):
        for job in jobs:
            steps, values = series(job, key)
            if steps:
                ax.plot(steps, values, marker=".", color=colour(job), label=label(job), linewidth=1.2, alpha=0.85)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="y", useOffset=False)  # "1e-5+1.07898e1" offsets are unreadable
        ax.grid(alpha=0.3)
    handles = {}
    for ax in axes:  # jobs that share a label (a hyperparameter value) share one entry
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if 0 < len(handles) <= MAX_LEGEND:
        fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 0), ncol=3, fontsize=7)
    return to_png(fig)


def curves_by_job(jobs: list[dict], keys: list[str], title: str) -> bytes:
    """Every job's curves overlaid, each job its own colour, labelled with its swept overrides."""
    varied = swept_overrides(jobs)
    cmap = colormaps["tab10" if len(jobs) <= 10 else "tab20"]
    colours = {job["name"]: cmap(i % cmap.N) for i, job in enumerate(jobs)}
    return _curves(
        jobs,
        keys,
        lambda job: colours[job["name"]],
        lambda job: f"{job['name']}: {' '.join(varied[job['name']])}"[:70],
        title,
    )


def value_colours(values: list[str]) -> dict[str, tuple]:
    """A colour per distinct value: numbers along viridis in numeric order, other values tab10 by name."""
    distinct = sorted(set(values), key=lambda v: (as_number(v) is None, as_number(v) or 0.0, v))
    if all(as_number(v) is not None for v in distinct) and len(distinct) > 1:
        return {v: colormaps["viridis"](i / (len(distinct) - 1) * 0.9) for i, v in enumerate(distinct)}
    cmap = colormaps["tab10"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(distinct)}


def curves_by_value(jobs: list[dict], keys: list[str], name: str, values: dict[str, str]) -> bytes:
    """Every job's curves coloured by its value of one swept hyperparameter (one legend entry per value)."""
    colours = value_colours(list(values.values()))
    ordered = sorted(jobs, key=lambda job: list(colours).index(values[job["name"]]))  # legend in value order
    return _curves(
        ordered,
        keys,
        lambda job: colours[values[job["name"]]],
        lambda job: f"{name}={values[job['name']]}",
        f"training curves coloured by {name}",
    )


def _labels(numbers: list[float]) -> list[str]:
    """The shortest %g labels (3 to 8 significant digits) that tell distinct numbers apart."""
    for digits in range(3, 9):
        labels = [f"{n:.{digits}g}" for n in numbers]
        if len(set(labels)) == len(set(numbers)):
            break
    return labels


def _axis(values: list[str]) -> tuple[Callable[[str], float], list[tuple[float, str]]]:
    """Map one axis's values to [0, 1]: numbers by value (log10 when they span >= 20x and are positive), other
    values evenly by sorted name. Returns the mapping and the (position, label) ticks to draw."""
    numbers = [as_number(v) for v in values]
    if all(n is not None for n in numbers):
        log = min(numbers) > 0 and max(numbers) / min(numbers) >= 20
        scaled = [math.log10(n) if log else n for n in numbers]
        low, high = min(scaled), max(scaled)

        def position(v: str) -> float:
            n = math.log10(as_number(v)) if log else as_number(v)
            return 0.5 if high == low else (n - low) / (high - low)

        distinct = sorted(set(values), key=as_number)
        if len(distinct) > 6:  # many trial values (Optuna): label the ends and the middle only
            distinct = [distinct[0], distinct[len(distinct) // 2], distinct[-1]]
        return position, [(position(v), text) for v, text in zip(distinct, _labels([as_number(v) for v in distinct]))]
    distinct = sorted(set(values))
    slots = {v: (0.5 if len(distinct) == 1 else i / (len(distinct) - 1)) for i, v in enumerate(distinct)}
    return slots.__getitem__, [(p, v) for v, p in slots.items()]


def parallel_coordinates(jobs: list[dict], params: dict[str, dict[str, str]], metric: str, minimize: bool) -> bytes:
    """One line per job with the metric across the hyperparameter axes and the metric's axis, coloured by the
    metric (the best brightest); jobs without a finite metric are left out."""
    scored = [job for job in jobs if metric_value(job, metric) is not None]
    values = {name: [by_job[job["name"]] for job in scored] for name, by_job in params.items()}
    values[metric] = [repr(metric_value(job, metric)) for job in scored]
    axes = list(values)
    mappings = {name: _axis(values[name]) for name in axes}
    scores = [metric_value(job, metric) for job in scored]
    low, high = min(scores), max(scores)
    pad = 0 if high > low else max(abs(low) * 0.01, 1e-6)  # all equal: a narrow scale around the one value
    norm = Normalize(low - pad, high + pad)
    cmap = colormaps["viridis_r" if minimize else "viridis"]
    fig = Figure(figsize=(max(6.0, 2.2 * len(axes) + 1.5), 4.6))
    ax = fig.subplots()
    best = scores.index(min(scores) if minimize else max(scores))
    ends: dict[float, list[str]] = {}  # jobs that end at one point share one label
    for i, job in enumerate(scored):
        ys = [mappings[name][0](values[name][i]) for name in axes]
        ax.plot(range(len(axes)), ys, color=cmap(norm(scores[i])), linewidth=3 if i == best else 1.5, alpha=0.9)
        ends.setdefault(round(ys[-1], 3), []).append(job["name"])
    for y, names in ends.items():
        text = ", ".join(names[:6]) + (f" +{len(names) - 6}" if len(names) > 6 else "")
        ax.annotate(text, (len(axes) - 1, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=7)
    for x, name in enumerate(axes):
        ax.axvline(x, color="0.3", linewidth=1)
        for y, text in mappings[name][1]:
            ax.annotate(
                text,
                (x, y),
                xytext=(-4, 0),
                textcoords="offset points",
                ha="right",
                va="center",
                fontsize=7,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},  # legible over lines
            )
    ax.set_xticks(range(len(axes)), axes, fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.6, len(axes) - 0.4)
    ax.set_ylim(-0.06, 1.06)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
    bar.formatter.set_useOffset(False)
    bar.set_label(f"{metric} ({'lower' if minimize else 'higher'} is better)", fontsize=8)
    ax.set_title(f"{len(scored)} jobs: swept hyperparameters against {metric}", fontsize=10)
    fig.tight_layout()
    return to_png(fig)
