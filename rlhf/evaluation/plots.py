"""PNG plots of an evaluation: scores with intervals per method, reward against KL, training curves."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

log = logging.getLogger(__name__)

SCORES_PNG = "scores.png"
REWARD_KL_PNG = "reward_vs_kl.png"
CURVES_PNG = "training_curves.png"
TRAJECTORY_PNG = "trajectory.png"

# What to plot from each algorithm's metrics.jsonl (first keys that exist), in this order; for an algorithm not
# listed, its other numeric metrics by name (curve_keys). The online arms: reward-model score, KL, length.
CURVE_KEYS = {
    "dpo": ["loss", "rewards/accuracies", "rewards/margins"],
    "sft": ["loss", "mean_token_accuracy", "entropy"],
    "ppo": ["objective/scores", "objective/kl", "response/length"],
    "grpo": ["objective/scores", "kl", "completions/mean_length"],  # TRL's GRPOTrainer names, our objective/scores
    "rloo": ["objective/scores", "kl", "completions/mean_length"],  # TRL's RLOOTrainer names, our objective/scores
}
_SKIP_PREFIXES = ("time/", "perf/", "lr", "epoch", "learning_rate", "grad_norm")
MAX_CURVES = 3


def policy_colors(names: list[str]) -> dict[str, str]:
    """One colour per compared policy, in the order given (any names: base, dpo, ppo, grpo, rloo, sweep jobs),
    shared by every plot of an evaluation; the cycle repeats past its length (10 by default)."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def _errorbar(ax, x: float, stat: dict, color: str, label: str, **kwargs) -> None:
    ax.errorbar(
        [x],
        [stat["mean"]],
        yerr=[[stat["mean"] - stat["low"]], [stat["high"] - stat["mean"]]],
        fmt="o",
        color=color,
        capsize=6,
        markersize=8,
        label=label,
        **kwargs,
    )


def plot_scores(results: dict, path: Path) -> None:
    """Avg reward (and gold score) per method with their intervals; the dataset's chosen responses as a line."""
    names = list(results["policies"])
    colors = policy_colors(names)
    panels = [("avg_reward", "Judge reward model score")] + (
        [("gold_score", "Gold-judge score")] if results["gold"] else []
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    level = int(round(results["settings"]["confidence"] * 100))
    for ax, (key, label) in zip(axes[0], panels):
        for i, name in enumerate(names):
            _errorbar(ax, i, results["policies"][name][key], colors[name], name)
        chosen = results["chosen"].get(key)
        if chosen:
            ax.axhline(chosen["mean"], color="gray", linestyle="--", linewidth=1, label="dataset chosen responses")
        ax.set_xticks(range(len(names)), names)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xlabel("policy")
        ax.set_ylabel(f"mean {label.lower()} ({level}% bootstrap interval)")
        ax.set_title(f"{label} on {results['dataset']['prompts']} held-out prompts")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reward_vs_kl(results: dict, path: Path) -> None:
    """One point per policy (intervals on both axes), plus each kept checkpoint (evaluation.checkpoints)."""
    names = list(results["policies"])
    colors = policy_colors(names)
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for name in names:
        p = results["policies"][name]
        kl, reward = p["kl"], p["avg_reward"]
        ax.errorbar(
            [kl["mean"]],
            [reward["mean"]],
            xerr=[[kl["mean"] - kl["low"]], [kl["high"] - kl["mean"]]],
            yerr=[[reward["mean"] - reward["low"]], [reward["high"] - reward["mean"]]],
            fmt="o",
            color=colors[name],
            capsize=4,
            markersize=8,
            label=name,
        )
        ax.annotate(name, (kl["mean"], reward["mean"]), textcoords="offset points", xytext=(6, 6), fontsize=9)
    for c in (c for c in results["checkpoints"] if not c.get("final")):  # a final point is the policy itself
        ax.plot(
            [c["kl"]],
            [c["avg_reward"]],
            marker="x",
            linestyle="none",
            markersize=9,
            color=colors.get(c["policy"], "black"),
            label=f"{c['policy']} checkpoint (step {c['step']})",
        )
    ax.axvline(0, color="gray", linewidth=0.8, linestyle=":")
    ax.set_xlabel("KL to the reference per response (nats)")
    ax.set_ylabel("mean judge reward-model score")
    ax.set_title("Reward against KL cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a run killed mid-write leaves a partial last line
    return rows


def curve_keys(algo: str | None, rows: list[dict]) -> list[str]:
    """The metrics to plot: the algorithm's usual ones, then any other numeric ones; those logged more than
    once first."""
    counts: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                counts[key] = counts.get(key, 0) + 1
    preferred = [k for k in CURVE_KEYS.get(algo or "", []) if k in counts]
    others = [k for k in sorted(counts) if k not in preferred and not k.startswith(_SKIP_PREFIXES)]
    # curves before single points (e.g. a final evaluation row)
    return sorted(preferred + others, key=lambda k: (counts[k] < 2, (preferred + others).index(k)))[:MAX_CURVES]


def plot_training_curves(
    runs: dict[str, tuple[Path, str | None]], path: Path, colors: dict[str, str] | None = None
) -> None:
    """One row per compared run (name -> (run dir, algo)), its key metrics against the step."""
    names = list(runs)
    colors = colors or policy_colors(names)
    fig, axes = plt.subplots(
        max(1, len(names)), MAX_CURVES, figsize=(4.2 * MAX_CURVES, 3.2 * max(1, len(names))), squeeze=False
    )
    if not names:
        for ax in axes[0]:
            ax.axis("off")
        axes[0][1].set_title("Training curves: no training runs compared (base only)")
    for row, name in zip(axes, names):
        run_dir, algo = runs[name]
        rows = read_metrics(run_dir)
        keys = curve_keys(algo, rows)
        for ax, key in zip(row, keys):
            points = [
                (r["step"], r[key])
                for r in rows
                if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
            ]
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], marker=".", color=colors[name], label=f"{name} ({algo})"
            )
            ax.set_title(f"{name}: {key}", fontsize=10)
            ax.set_xlabel("training step")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
        for ax in row[len(keys) :]:
            ax.axis("off")
        if not keys:
            row[0].set_title(f"{name}: no metrics.jsonl curves", fontsize=10)
    fig.suptitle("Training curves of the compared runs (metrics.jsonl)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def trajectory_axis(points: list[dict]) -> tuple[str, str]:
    """(key, label) of a trajectory's x axis: training seconds where every point recorded them, else the step."""
    if points and all("train_seconds" in c for c in points):
        return "train_seconds", "training seconds (phases that make the policy)"
    return "step", "training step"


def plot_trajectory(results: dict, path: Path) -> None:
    """Each policy run's checkpoints, its final adapter last: gold score, judge-RM score (mean, with bootstrap
    intervals over prompts) and KL against the training cost its run had spent (evaluation.checkpoints)."""
    points = results["checkpoints"]
    colors = policy_colors(list(results["policies"]))
    panels = [("gold_score", "gold-judge score")] if results["gold"] else []
    panels += [("avg_reward", "judge reward-model score"), ("kl", "KL to the reference per response")]
    xkey, xlabel = trajectory_axis(points)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for name in dict.fromkeys(c["policy"] for c in points):
            line = [c for c in points if c["policy"] == name]
            x, y = [c[xkey] for c in line], [c[key] for c in line]
            ax.plot(x, y, marker="o", color=colors.get(name, "black"), label=name)
            if f"{key}_interval" in line[0]:
                lows, highs = [c[f"{key}_interval"]["low"] for c in line], [c[f"{key}_interval"]["high"] for c in line]
                ax.fill_between(x, lows, highs, color=colors.get(name, "black"), alpha=0.15)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"Each run's checkpoints on {results['dataset']['prompts']} held-out prompts (last point: the policy)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(run_dir: Path, results: dict, run_dirs: dict[str, Path]) -> list[str]:
    """Write every plot into ``run_dir``; returns their file names (a failing plot is a warning, not an error)."""
    runs = {name: (Path(d), results["policies"][name]["algo"]) for name, d in run_dirs.items()}
    written = []
    for name, draw in (
        (SCORES_PNG, lambda p: plot_scores(results, p)),
        (REWARD_KL_PNG, lambda p: plot_reward_vs_kl(results, p)),
        (CURVES_PNG, lambda p: plot_training_curves(runs, p, policy_colors(list(results["policies"])))),
        *([(TRAJECTORY_PNG, lambda p: plot_trajectory(results, p))] if results["checkpoints"] else []),
    ):
        try:
            draw(Path(run_dir) / name)
            written.append(name)
        except Exception as err:  # a plot must not lose the numbers
            log.warning("plot %s failed (%s: %s)", name, type(err).__name__, err)
            plt.close("all")
    return written
