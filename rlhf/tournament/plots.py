"""The tournament's PNG figures from report.json's content: the score-against-KL frontier (every method and seed,
and the online arms' own held-out start / final points), the scores with their intervals, and the paired
differences with their verdicts. Built on matplotlib's Figure (no pyplot state); the method colours are
evaluate.py's (rlhf.evaluation.plots.policy_colors)."""

from __future__ import annotations

import logging
from pathlib import Path

from matplotlib.figure import Figure

from rlhf.evaluation.plots import policy_colors
from rlhf.tournament.aggregate import label

log = logging.getLogger(__name__)

FRONTIER_PNG = "frontier.png"
SCORES_PNG = "scores.png"
DIFFERENCES_PNG = "differences.png"
COST_FRONTIER_PNG = "cost_frontier.png"
TITLES = {"gold": "gold-judge score", "judge": "judge reward-model score"}


def _panels(report: dict) -> list[str]:
    return [score for score in ("gold", "judge") if report["chosen"].get(score) is not None]


def _yerr(stat: dict) -> list[list[float]]:
    return [[stat["mean"] - stat["low"]], [stat["high"] - stat["mean"]]]


def plot_frontier(report: dict, path: Path) -> None:
    """Score against KL per response: one small point per method and seed, the method's mean with its intervals
    on both axes, and the online arms' held-out start -> final points (hollow squares, dashed) where they are on
    that axis (the gold score always; the judge score when the run's reward model is the judge)."""
    panels = _panels(report)
    colors = policy_colors(list(report["methods"]))
    fig = Figure(figsize=(6.2 * len(panels), 4.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, score in zip(axes, panels):
        for name, stats in report["methods"].items():
            seeds_kl, seeds_y = stats["per_seed"]["kl"], stats["per_seed"][score]
            ax.scatter(seeds_kl, seeds_y, color=colors[name], s=18, alpha=0.6)
            for seed, x, y in zip(report["seeds"], seeds_kl, seeds_y):
                ax.annotate(f"s{seed}", (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
            kl, y = stats["kl"], stats[score]
            level = f"{report['confidence']:.0%}"
            ax.errorbar([kl["mean"]], [y["mean"]], xerr=_yerr(kl), yerr=_yerr(y), fmt="o", markersize=9, capsize=4,
                        color=colors[name], label=f"{label(name)} (mean, {level} interval)")  # fmt: skip
        runs: dict[tuple, list[dict]] = {}
        for point in report["held_out"]:
            if point.get("kl") is not None and point.get(score) is not None:
                if score != "judge" or point["judge_comparable"]:
                    runs.setdefault((point["method"], point["seed"]), []).append(point)
        for (method, _), ends in runs.items():
            ax.plot([p["kl"] for p in ends], [p[score] for p in ends], linestyle="--", marker="s",
                    markerfacecolor="none", color=colors.get(method, "black"), alpha=0.7, linewidth=1)  # fmt: skip
        if runs:
            ax.plot([], [], linestyle="--", marker="s", markerfacecolor="none", color="gray",
                    label="training run's own held-out eval, start -> final")  # fmt: skip
        chosen = report["chosen"][score]
        ax.axhline(chosen["mean"], color="gray", linestyle=":", linewidth=1, label="dataset chosen responses")
        ax.set_xlabel("KL to the reference per response (nats)")
        ax.set_ylabel(f"mean {TITLES[score]}")
        ax.set_title(f"{TITLES[score].capitalize()} against KL, {len(report['seeds'])} seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_scores(report: dict, path: Path) -> None:
    """Each method's mean score with its interval over seeds and prompts; its per-seed means as dots."""
    panels = _panels(report)
    names = list(report["methods"])
    colors = policy_colors(names)
    fig = Figure(figsize=(5.5 * len(panels), 4.5))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, score in zip(axes, panels):
        for x, name in enumerate(names):
            stat = report["methods"][name][score]
            ax.errorbar([x], [stat["mean"]], yerr=_yerr(stat), fmt="o", color=colors[name], capsize=6, markersize=8)
            seeds = report["methods"][name]["per_seed"][score]
            ax.scatter([x + 0.12] * len(seeds), seeds, color=colors[name], s=12, alpha=0.6)
        ax.axhline(report["chosen"][score]["mean"], color="gray", linestyle="--", linewidth=1, label="dataset chosen")
        ax.set_xticks(range(len(names)), [label(n) for n in names])
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_ylabel(f"mean {TITLES[score]} ({report['confidence']:.0%} interval; dots: seeds)")
        ax.set_title(f"{TITLES[score].capitalize()}: {len(report['seeds'])} seeds x {report['prompts'][0]} prompts")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_differences(report: dict, path: Path) -> None:
    """The paired differences (a - b) with their intervals, one row each, the verdict beside it."""
    rows = report["differences"]
    fig = Figure(figsize=(8, 0.45 * len(rows) + 1.4))
    ax = fig.subplots()
    for y, row in enumerate(reversed(rows)):
        d = row["difference"]
        colour = "tab:green" if d["low"] > 0 else "tab:red" if d["high"] < 0 else "0.4"
        ax.errorbar([d["mean"]], [y], xerr=_yerr(d), fmt="o", color=colour, capsize=4)
        ax.annotate(row["verdict"], (d["high"], y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(
        range(len(rows)), [f"{label(r['a'])} − {label(r['b'])} ({TITLES[r['score']]})" for r in reversed(rows)]
    )
    ax.set_xlabel(f"mean paired difference ({report['confidence']:.0%} crossed interval, raw)")
    ax.set_title("Differences over seeds and prompts")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_cost_frontier(report: dict, path: Path) -> None:
    """--budget: gold, judge-RM score and KL (columns) against training seconds and training FLOPs (rows), one
    line per method from the base (0) through each budget level, bands: the hierarchical intervals over seeds and
    prompts (report.json's cost_frontier)."""
    frontier = report["cost_frontier"]
    scores = [
        s for s in ("gold", "judge", "kl") if all(lv[s] for levels in frontier["levels"].values() for lv in levels)
    ]
    colors = policy_colors(["base", *frontier["levels"]])
    fig = Figure(figsize=(4.6 * len(scores), 7.6))
    axes = fig.subplots(2, len(scores), squeeze=False)
    for row, (xkey, xlabel) in zip(axes, (("train_seconds", "training seconds"), ("train_flops", "training FLOPs"))):
        for ax, score in zip(row, scores):
            for method, levels in frontier["levels"].items():
                x = [lv[xkey] for lv in levels]
                ax.plot(x, [lv[score]["mean"] for lv in levels], marker="o", color=colors[method], label=label(method))
                ax.fill_between(x, [lv[score]["low"] for lv in levels], [lv[score]["high"] for lv in levels],
                                color=colors[method], alpha=0.15)  # fmt: skip
            ax.set_xlabel(f"{xlabel} (0: base)")
            ax.set_ylabel(TITLES.get(score, "KL to the reference per response"))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"Quality against training cost ({report['confidence']:.0%} bands over seeds and prompts)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_all(directory: Path, report: dict) -> list[str]:
    """Every figure into ``directory``; their file names (a failing plot is a warning: the numbers matter more)."""
    written = []
    for name, draw in (
        (FRONTIER_PNG, plot_frontier),
        (SCORES_PNG, plot_scores),
        (DIFFERENCES_PNG, plot_differences),
        (COST_FRONTIER_PNG, plot_cost_frontier),
    ):
        if (name == DIFFERENCES_PNG and not report["differences"]) or (
            name == COST_FRONTIER_PNG and not report.get("cost_frontier")
        ):
            continue
        try:
            draw(report, Path(directory) / name)
            written.append(name)
        except Exception as err:
            log.warning("plot %s failed (%s: %s)", name, type(err).__name__, err)
    return written
