"""The report's tables as rows of text: the ranked jobs and evaluate.py's results with their intervals, and
markdown for compare.md and the W&B report (the HTML page renders the same rows)."""

from __future__ import annotations

from rlhf.report.data import metric_value, swept_overrides

# evaluate.py's per-policy metrics in the order of its results.md; others found are appended by key.
EVAL_COLUMNS = {
    "avg_reward": "Avg reward",
    "gold_score": "Gold score",
    "win_rate_vs_base_rm": "Win vs base (RM)",
    "win_rate_vs_base_gold": "Win vs base (gold)",
    "win_rate_vs_chosen_rm": "Win vs chosen (RM)",
    "win_rate_vs_chosen_gold": "Win vs chosen (gold)",
    "reward_delta_vs_base": "Reward − base",
    "gold_delta_vs_base": "Gold − base",
    "accuracy": "Accuracy",
    "ll_accuracy": "LL accuracy",
    "kl": "KL / response",
    "length": "Length",
    "eos_rate": "EOS rate",
    "distinct_2": "Distinct-2",
    "reward_hacking": "Hacking flag",
}
NONE = "–"


def _status(summary: dict) -> str:
    status = summary.get("status", "?")
    return status if status == "finished" else f"{status}: {str(summary.get('error', ''))[:80]}"


def markdown_table(ranked: list[dict], metric: str) -> str:
    """compare.md's table: rank, job, its swept overrides, status, the metric, wall time and peak memory."""
    varied = swept_overrides(ranked)
    lines = [
        f"| rank | job | overrides | status | {metric} | wall_time_s | peak_rss_mb |",
        "|---|---|---|---|---|---|---|",
    ]
    for rank, job in enumerate(ranked, start=1):
        s = job["summary"]
        value = s.get(metric)
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else NONE
        lines.append(
            f"| {rank} | {job['name']} | {' '.join(varied[job['name']])} | {_status(s)} | {shown} "
            f"| {s.get('wall_time_s', NONE)} | {s.get('peak_rss_mb', NONE)} |"
        )
    return "\n".join(lines) + "\n"


def ranking_rows(ranked: list[dict], metric: str, params: dict[str, dict[str, str]]) -> tuple[list[str], list[list]]:
    """The ranked jobs with one column per swept hyperparameter (the HTML table)."""
    columns = ["rank", "job", *params, "status", metric, "wall_time_s", "peak_rss_mb"]
    rows = []
    for rank, job in enumerate(ranked, start=1):
        s, value = job["summary"], metric_value(job, metric)
        rows.append(
            [
                str(rank),
                job["name"],
                *(values[job["name"]] for values in params.values()),
                _status(s),
                NONE if value is None else f"{value:.4f}",
                str(s.get("wall_time_s", NONE)),
                str(s.get("peak_rss_mb", NONE)),
            ]
        )
    return columns, rows


def _is_interval(value) -> bool:
    return isinstance(value, dict) and {"mean", "low", "high"} <= value.keys()


def _is_scalar(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value) -> str:
    if _is_interval(value):
        return f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"
    if isinstance(value, bool):  # a results.json of the old hacking rule (bare means)
        return "YES" if value else "no"
    if isinstance(value, str):  # the hacking flag: "likely reward hacking", "reward up, gold flat", "not flagged"
        return value
    if _is_scalar(value):
        return f"{value:.3f}"
    return NONE


def _policy_cell(policy: dict, key: str) -> str:
    # As results.md: the base policy's accuracy is the log-likelihood comparison, marked (LL).
    ll = key == "accuracy" and policy.get("accuracy_kind") == "length-normalised log-likelihood"
    return _cell(policy.get(key)) + (" (LL)" if ll and policy.get(key) is not None else "")


def evaluation_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """One row per evaluated policy (and the dataset's chosen responses): each metric, intervals as
    ``mean [low, high]``; columns only for metrics some policy has."""
    policies = results["policies"]
    found = [k for p in policies.values() for k, v in p.items() if _is_interval(v) or _is_scalar(v)]
    found += [k for p in policies.values() for k, v in p.items() if k == "reward_hacking" and v is not None]
    keys = [k for k in EVAL_COLUMNS if k in found] + sorted(set(found) - EVAL_COLUMNS.keys())
    columns = ["Policy", "Algo", *(EVAL_COLUMNS.get(k, k) for k in keys)]
    rows = [[name, str(p.get("algo", NONE)), *(_policy_cell(p, k) for k in keys)] for name, p in policies.items()]
    chosen = results.get("chosen")
    if isinstance(chosen, dict):
        rows.append(["dataset chosen", NONE, *(_cell(chosen.get(k)) for k in keys)])
    return columns, rows


def evaluation_caption(results: dict) -> str:
    """What the evaluation compared on, and the intervals' confidence and resamples."""
    d, s = results.get("dataset") or {}, results.get("settings") or {}
    parts = [
        f"{d.get('prompts', '?')} prompts and {d.get('pairs', '?')} pairs of dataset={d.get('name', '?')}",
        f"model={results.get('model', '?')}",
    ]
    if "confidence" in s:
        parts.append(
            f"{round(s['confidence'] * 100)}% percentile-bootstrap intervals ({s.get('bootstrap_samples', '?')} "
            "resamples) in brackets"
        )
    return "; ".join(parts)


def markdown(columns: list[str], rows: list[list[str]]) -> str:
    """A markdown table of text cells (pipes escaped)."""

    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(columns), line(["---"] * len(columns)), *(line(r) for r in rows)]) + "\n"
