"""run_dir/sentinel.png: the proxy and the independent score against KL, side by side, one point per checkpoint.

Over-optimisation shows as the left panel still climbing with KL while the right one turns down. The style
follows rlhf/evaluation/plots.py (which this layer may not import): Agg backend, KL on x, a grid, points
annotated with their label.
"""

from __future__ import annotations

from pathlib import Path


def _judge_label(judge: str, short: bool = False) -> str:
    """The gold judge, or the judge run's last two path parts (outputs/judge/<timestamp> -> judge/<timestamp>)."""
    if judge == "gold":
        return "gold-judge" if short else "gold judge"
    return "judge" if short else "/".join(Path(judge).parts[-2:])


def plot_sentinel(history: list[dict], kept: int | None, path: Path) -> None:
    """``history``: the sentinel's rows (step, proxy_score, independent_score, kl, judge, prompts), in step order;
    ``kept``: the step whose policy is the run's adapter/ (ringed), or None."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    kl = [row["kl"] for row in history]
    judge = history[-1]["judge"]
    panels = (  # (history key, title, y label)
        ("proxy_score", "proxy: the reward model PPO optimises", "mean reward-model score"),
        ("independent_score", f"independent: {_judge_label(judge)}", f"mean {_judge_label(judge, short=True)} score"),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 4.5), squeeze=False)
    for ax, (key, title, ylabel), color in zip(axes[0], panels, ("C0", "C1")):
        scores = [row[key] for row in history]
        ax.plot(kl, scores, marker="o", color=color, linewidth=1, label="checkpoints, in step order")
        for row, x, y in zip(history, kl, scores):
            ax.annotate(f"step {row['step']}", (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
        if kept is not None:
            points = [(x, y) for row, x, y in zip(history, kl, scores) if row["step"] == kept]
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="o",
                markersize=14,
                markerfacecolor="none",
                markeredgecolor="black",
                linestyle="none",
                label=f"kept: step {kept} (adapter/)",
            )
        ax.set_xlabel("KL to the reference per response (nats)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"Goodhart sentinel: {history[-1]['prompts']} validation prompts per checkpoint")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
