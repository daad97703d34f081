"""The tournament's report in its directory: report.json (rlhf.tournament.aggregate), report.md, the PNGs, and one
W&B run in the tournament's group (offline without an API key; none with logger=none, as in the tests)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rlhf.config import LoggerSettings, from_node
from rlhf.report.tables import markdown
from rlhf.tournament import plots
from rlhf.tournament.aggregate import COST_KEYS, SCORES, aggregate, label
from rlhf.tournament.collect import collect
from rlhf.tournament.plan import load_plan

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
NONE = "-"
SCORE_NAMES = {"gold": "gold", "judge": "judge RM"}
COST_NAMES = {
    "wall_time_s": "wall time (s)",
    "peak_rss_mb": "peak memory (MB)",
    "peak_cuda_mb": "peak GPU memory (MB)",
    "episodes": "episodes / pairs",
    "tokens_forwarded": "tokens forwarded",
    "tokens_backpropagated": "tokens backpropagated",
}
STAGE_NAMES = {"rm": "rm (reward model)", "judge": "judge (independent RM)", "evaluate": "evaluate (all methods)"}
TOP_PHASES = 3  # the phases a cost row names, longest first

READING = """\
- **Scores**: the mean over seeds of each seed's mean over the held-out prompts, every seed weighing the same.
  The **gold** score (hh_synthetic's programmatic judge) is the ground truth where there is one; the **judge RM**
  score is {judge}.
- **Intervals** in brackets: {level} crossed intervals. Every seed answers the same prompts, so a score is a seeds x
  prompts table with a seed effect (the training run), a prompt effect shared by every seed, and noise; the interval
  is the mean +- the quantile of (a t over the seed means, S - 1 degrees of freedom) + (the shared prompt term),
  each component estimated from the table (rlhf/tournament/stats.py). It covers 95% in a simulation of this layout
  at 3, 5 and 10 seeds (tests/tournament/test_coverage.py); with 3 seeds it is wide, because 3 runs say little.
- **Win vs base / vs chosen**: the share of prompts where the method's response scores above the base model's
  response to the same prompt / above the dataset's chosen response (ties one half), same intervals.
- **Differences**: per seed and prompt, method a's score minus method b's (both answered the same prompt), then
  the same interval and its two-sided p-value. The rows of this table are one family of {family} verdicts: the
  p-values are Holm-adjusted over all of them (the chance of any false "better" in the table stays under
  {alpha}), and the verdict says "<a> better" or "<b> better" only when the adjusted p-value is under {alpha},
  else "no difference at {level} (family)". The raw interval and p-value are shown beside it.
- **KL / response**: mean over the method's own samples of the summed log pi - log pi_ref (nats); 0 for base.
- **Cost**: each run's summary.json, the mean over seeds ("-": not recorded). The online arms also need the
  reward model (the rm row); the evaluate row is one evaluation of every method.
- The seeds are 0..{last}, fixed before any run: never chosen after looking at the results.
"""


def _interval(stat: dict | None) -> str:
    return NONE if not stat else f"{stat['mean']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"


def _number(value) -> str:
    if value is None:
        return NONE
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _phases(phase_seconds: dict) -> str:
    longest = sorted(((s, p) for p, s in phase_seconds.items() if s is not None), reverse=True)[:TOP_PHASES]
    return ", ".join(f"{p} {_number(s)}" for s, p in longest) or NONE


def score_table(report: dict) -> tuple[list[str], list[list[str]]]:
    """One row per method and the dataset's chosen responses: scores, win rates, KL."""
    scores = [s for s in SCORES if report["chosen"].get(s) is not None]
    keys = [*scores, *(f"win_vs_base_{s}" for s in scores), *(f"win_vs_chosen_{s}" for s in scores), "kl"]
    names = {
        **{s: f"{SCORE_NAMES[s]} score" for s in scores},
        **{f"win_vs_base_{s}": f"win vs base ({SCORE_NAMES[s]})" for s in scores},
        **{f"win_vs_chosen_{s}": f"win vs chosen ({SCORE_NAMES[s]})" for s in scores},
        "kl": "KL / response",
    }
    rows = [[label(name), *(_interval(stats.get(k)) for k in keys)] for name, stats in report["methods"].items()]
    rows.append([label("chosen"), *(_interval(report["chosen"].get(k)) for k in keys)])
    return ["method", *(names[k] for k in keys)], rows


def _p(value: float | None) -> str:
    return NONE if value is None else "<0.001" if value < 0.001 else f"{value:.3f}"


def difference_table(report: dict) -> tuple[list[str], list[list[str]]]:
    """One row per difference: the raw interval, the raw and Holm-adjusted p-values, the adjusted verdict."""
    level = f"{report['confidence']:.0%}"
    rows = [
        [f"{label(r['a'])} − {label(r['b'])}", SCORE_NAMES[r["score"]], _interval(r["difference"]),
         _p(r.get("p")), _p(r.get("p_holm")), r["verdict"]]
        for r in report["differences"]
    ]  # fmt: skip
    return ["comparison", "score", f"mean difference [raw {level}]", "p (raw)", "p (Holm)", "verdict (Holm)"], rows


def cost_table(report: dict) -> tuple[list[str], list[list[str]]]:
    keys = [k for k in COST_KEYS if k != "peak_cuda_mb" or any(c.get(k) for c in report["costs"].values())]
    rows = [
        [STAGE_NAMES.get(stage, label(stage)), *(_number(c.get(k)) for k in keys), _phases(c["phase_seconds"])]
        for stage, c in report["costs"].items()
    ]  # fmt: skip
    return ["run", *(COST_NAMES[k] for k in keys), f"longest phases (s, top {TOP_PHASES})"], rows


def seed_table(report: dict) -> tuple[list[str], list[list[str]]]:
    scores = [s for s in SCORES if report["chosen"].get(s) is not None]
    rows = []
    for i, seed in enumerate(report["seeds"]):
        for name, stats in report["methods"].items():
            values = [stats["per_seed"][s][i] for s in (*scores, "kl")]
            rows.append([str(seed), label(name), *(NONE if v is None else f"{v:.3f}" for v in values)])
    return ["seed", "method", *(SCORE_NAMES[s] for s in scores), "KL / response"], rows


def frontier_sections(report: dict) -> list[str]:
    """--budget: the score at equal training seconds, and where more compute stopped helping (none without it)."""
    frontier = report.get("cost_frontier")
    if not frontier:
        return []
    score, methods = frontier["score"], list(frontier["levels"])
    equal = [
        [f"{row['train_seconds']:.3g}", *(_interval(row[m]) for m in methods)] for row in frontier["equal_seconds"]
    ]
    plateaus = []
    for method in methods:
        stop, levels = frontier["plateau"][method], frontier["levels"][method]
        where = (
            f"{label(method)}: more compute stopped helping beyond {stop['budget']}x ({stop['train_seconds']:.3g} s)"
            if stop["budget"]
            else f"{label(method)}: still helping at {levels[-1]['budget']}x ({levels[-1]['train_seconds']:.3g} s), "
            "the largest budget run"
        )
        plateaus.append(f"- {where}")
    return [
        f"## {SCORE_NAMES[score].capitalize()} score at equal training seconds",
        "",
        "Each seed's curve interpolated between its checkpoints (prompt by prompt; 0 s is the base), then the "
        "hierarchical bootstrap. cost_frontier.png draws every score against seconds and FLOPs.",
        "",
        markdown(["training seconds", *(label(m) for m in methods)], equal),
        *plateaus,
        "",
    ]


def report_markdown(report: dict) -> str:
    seeds, arms = report["seeds"], ", ".join(label(a) for a in report["arms"])
    level = f"{report['confidence']:.0%}"
    judge = (
        "each seed's independent judge (algo=judge, the other half of the pairs)"
        if report["judge"] == "judge"
        else "each seed's reward model, the one the online arms optimised (a proxy: read it beside the gold score)"
    )
    extra = " ".join(report["overrides"]) or "none"
    lines = [
        f"# Tournament {Path(report['directory']).name}",
        "",
        f"{arms} against base over {len(seeds)} seeds ({', '.join(map(str, seeds))}; fixed before any run), "
        f"dataset={report['dataset']}, model={report['model']}, {report['prompts'][0]} held-out prompts per seed; "
        f"overrides: {extra}. Intervals: {level} crossed intervals over seeds and prompts; verdicts Holm-adjusted over "
        f"the {len(report['differences'])} differences.",
        "",
        "## Scores",
        "",
        markdown(*score_table(report)),
        "## Differences",
        "",
        markdown(*difference_table(report)) if report["differences"] else "No arms to compare.\n",
        "## Cost (mean over seeds)",
        "",
        markdown(*cost_table(report)),
        *frontier_sections(report),
        "## Per seed",
        "",
        markdown(*seed_table(report)),
        "## How to read it",
        "",
        READING.format(
            judge=judge,
            level=level,
            family=len(report["differences"]),
            alpha=f"{1 - report['confidence']:.2g}",
            last=seeds[-1],
        ),
        *(f"![{Path(p).stem}]({p})\n" for p in report.get("plots", [])),
    ]
    return "\n".join(lines)


def _flat(report: dict) -> dict[str, float]:
    """Scalars for the W&B summary: each method's score means and intervals, each difference."""
    flat = {}
    for name, stats in report["methods"].items():
        for key, stat in stats.items():
            if isinstance(stat, dict) and "mean" in stat:
                flat.update({f"{name}/{key}/{part}": stat[part] for part in ("mean", "low", "high")})
    for row in report["differences"]:
        stat = row["difference"]
        flat.update({f"diff/{row['a']}-{row['b']}/{row['score']}/{p}": stat[p] for p in ("mean", "low", "high")})
    return flat


def log_to_wandb(report: dict, logger: dict, group: str, directory: Path) -> None:
    """One W&B run (job_type tournament) in the tournament's group: the summary scalars, the tables, the figures.
    Nothing with logger=none or mode=disabled; W&B trouble is a warning (rlhf.run.tracking.Tracker)."""
    if not logger:  # a plan written without one (tests)
        return
    settings = from_node(LoggerSettings, logger, "logger")
    if settings.name == "none" or settings.mode == "disabled":
        return
    from rlhf.run.tracking import Tracker  # imports transformers: only when W&B is on

    tracker = Tracker(
        directory, settings, config=report, job_type="tournament", group=group, tags=["tournament"], name=group
    )
    tracker.set_summary(_flat(report))
    for name, table in (("scores", score_table), ("differences", difference_table), ("cost", cost_table)):
        tracker.log_table(name, *table(report), step=0)
    if tracker.wandb_run is not None:
        try:
            import wandb

            images = {f"plots/{Path(p).stem}": wandb.Image(str(directory / p)) for p in report.get("plots", [])}
            tracker.wandb_run.log(images, step=0)
        except Exception as err:  # W&B must never lose the report
            log.warning("W&B plots not logged (%s)", err)
    tracker.finish(0)


def write_report(directory: Path) -> dict:
    """Read the finished tournament in ``directory`` and write report.json, report.md, the PNGs and the W&B run;
    returns report.json's content."""
    directory = Path(directory)
    plan = load_plan(directory)
    report = aggregate(collect(plan))
    report["plots"] = plots.write_all(directory, report)
    (directory / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (directory / REPORT_MD).write_text(report_markdown(report), encoding="utf-8")
    log_to_wandb(report, plan.logger, plan.group, directory)
    return report
