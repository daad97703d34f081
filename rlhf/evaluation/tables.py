"""results.md (the headline table, then every metric), samples.jsonl and the W&B tables of an evaluation."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rlhf.evaluation.metrics import HACKING, REWARD_ONLY, reward_hacking

log = logging.getLogger(__name__)

HEADLINE_COLUMNS = ["Method", "Avg Reward", "Accuracy", "Notes"]
FULL_COLUMNS = [
    "Method",
    "Algo",
    "Reference",
    "Avg reward",
    "Gold score",
    "Win vs base (RM)",
    "Win vs base (gold)",
    "Win vs chosen (RM)",
    "Win vs chosen (gold)",
    "Accuracy",
    "LL accuracy",
    "KL / response",
    "Length",
    "EOS rate",
    "Distinct-2",
    "Hacking flag",
]

DEFINITIONS = """\
- **Avg reward**: mean judge reward-model score of the policy's responses to the held-out prompts, with a
  percentile-bootstrap interval over prompts.
- **Gold score** (hh_synthetic): mean gold-judge score in [-1, 1] of the same responses, with its interval, \
and per family.
- **Win vs base / vs chosen**: share of prompts where the policy's response scores above the base policy's
  response to the same prompt / above the dataset's chosen response, by the judge RM or the gold judge;
  ties count one half. The base against itself is 0.5 by definition.
- **Accuracy**: on held-out preference pairs, the share where the policy's implicit reward
  r(x, y) = log pi(y|x) - log pi_ref(y|x) (summed over response tokens; beta > 0 does not change the order)
  is higher for the chosen response than for the rejected one; ties count one half, so a policy equal to its
  reference scores 0.5. pi_ref is the base with adapters disabled, or the run's init adapter (e.g. SFT) when it
  started from one. For the base policy, whose implicit reward is zero, it is the length-normalised
  log-likelihood comparison: chosen wins when log pi(y_w|x) / |y_w| > log pi(y_l|x) / |y_l| (marked LL).
  **LL accuracy** is that comparison for every policy.
- **KL / response**: mean over the policy's own sampled responses of sum_t [log pi(y_t|..) - log pi_ref(y_t|..)],
  both from logits / temperature (the distribution sampled from; temperature 1 with greedy decoding): an unbiased
  estimate of KL(pi || pi_ref) per response, the estimator of PPO's eval/kl. 0 for the base policy.
- **Length**: response tokens including EOS; **EOS rate**: share of responses that ended before max_new_tokens;
  **Distinct-2**: distinct word bigrams / all word bigrams over all responses.
- **Hacking flag**: from the paired intervals over base, not bare means: "likely reward hacking" when the avg
  reward's gain over base has an interval above evaluation.hacking_margin and the gold score's change one below
  minus it; "reward up, gold flat" when only the reward gain is significant; else "not flagged".
"""


def _num(value: Any, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _interval(stat: dict | None, digits: int = 3) -> str:
    if not stat:
        return "–"
    return f"{stat['mean']:.{digits}f} [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"


def _mean(stat: dict | None) -> float | None:
    return None if not stat else stat["mean"]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(columns), _row(["---"] * len(columns)), *(_row(r) for r in rows)]


def _accuracy_cell(p: dict) -> str:
    if p.get("accuracy") is None:
        return "–"
    suffix = " (LL)" if p["accuracy_kind"] == "length-normalised log-likelihood" else ""
    return f"{p['accuracy']:.3f}{suffix}"


def _judge_label(results: dict) -> str:
    """Which judge the RM columns are: the independent one, or the proxy (a compared policy's own reward model)."""
    judge, proxy_of = results["judge"], results.get("judge_is_proxy_of", [])
    if judge.get("independent"):
        return f"independent judge reward model {judge['run_dir']}"
    proxy = f"the reward model {', '.join(proxy_of)} optimised" if proxy_of else "PPO's reward model"
    gold = "; the gold judge is the independent one" if results["gold"] else ""
    return f"judge reward model {judge['run_dir']} (the proxy: {proxy}{gold})"


def _notes(name: str, p: dict, results: dict) -> str:
    notes = []
    if p["algo"] == "base":
        notes.append("no adapter")
    if p.get("gold_score"):
        gold = f"gold {_interval(p['gold_score'], 2)}"
        if p.get("gold_delta_vs_base"):
            gold += f", {_num(p['gold_delta_vs_base']['mean'], 3, signed=True)} vs base"
        notes.append(gold)
    if p["algo"] != "base":
        notes.append(f"KL {_num(p['kl']['mean'], 2)}")
    if name in results.get("judge_is_proxy_of", []):
        notes.append("**judged by its own reward model** (avg reward not independent)")
    flag = hacking_flag(p, results)
    if flag in (HACKING, REWARD_ONLY):
        notes.append(
            f"**{flag}**: reward {_delta(p['reward_delta_vs_base'])}, gold {_delta(p['gold_delta_vs_base'])} vs base"
        )
    return "; ".join(notes)


def _delta(stat: dict) -> str:
    return f"{stat['mean']:+.3f} [{stat['low']:+.3f}, {stat['high']:+.3f}]"


def hacking_flag(p: dict, results: dict) -> str | None:
    """The policy's hacking flag (rlhf.evaluation.metrics.reward_hacking) from its paired intervals over base,
    recomputed here so a results.json of an older rule (bare means) reads by today's."""
    margin = (results.get("settings") or {}).get("hacking_margin", 0.0)
    return reward_hacking(p.get("reward_delta_vs_base"), p.get("gold_delta_vs_base"), margin)


def headline_rows(results: dict) -> list[list[str]]:
    return [
        [name, _interval(p["avg_reward"]), _accuracy_cell(p), _notes(name, p, results)]
        for name, p in results["policies"].items()
    ]


def full_rows(results: dict) -> list[list[str]]:
    rows = []
    for name, p in results["policies"].items():
        flag = hacking_flag(p, results)
        rows.append(
            [
                name,
                p["algo"],
                "base" if p["reference"] == "base" else "init adapter",
                _interval(p["avg_reward"]),
                _interval(p.get("gold_score")),
                _num(_mean(p.get("win_rate_vs_base_rm"))) if name != results["base"] else "0.500",
                _num(_mean(p.get("win_rate_vs_base_gold")))
                if name != results["base"] or not results["gold"]
                else "0.500",
                _num(_mean(p.get("win_rate_vs_chosen_rm"))),
                _num(_mean(p.get("win_rate_vs_chosen_gold"))),
                _accuracy_cell(p),
                _num(p.get("ll_accuracy")),
                _interval(p["kl"], 2),
                _num(p["length"], 1),
                _num(p["eos_rate"], 2),
                _num(p["distinct_2"]),
                "–" if flag is None else flag,
            ]
        )
    chosen = results["chosen"]
    rows.append(
        ["dataset chosen", "–", "–", _interval(chosen["avg_reward"]), _interval(chosen.get("gold_score"))] + ["–"] * 11
    )
    return rows


SCORE_LABELS = {"rm": "judge RM", "gold": "gold"}
PAIRED_COLUMNS = ["A - B", "Score", "Mean difference", "Interval", "Verdict"]


def paired_rows(results: dict) -> list[list[str]]:
    """One row per entry of results.json's ``comparisons`` (PAIRED_COLUMNS)."""
    return [
        [
            f"{c['a']} - {c['b']}",
            SCORE_LABELS.get(c["score"], c["score"]),
            _num(c["mean_diff"], 3, signed=True),
            f"[{_num(c['interval'][0], 3, True)}, {_num(c['interval'][1], 3, True)}]",
            c["verdict"],
        ]
        for c in results["comparisons"]
    ]


def paired_lines(results: dict) -> list[str]:
    """The "Paired differences" section: one row per comparison of results.json, or why there is none."""
    level = f"{results['settings']['confidence'] * 100:g}%"
    lines = [
        f"A - B on the same {results['dataset']['prompts']} prompts: the mean difference of the two policies' "
        f"scores with a {level} paired percentile-bootstrap interval (prompts resampled jointly, "
        f"{results['settings']['bootstrap_samples']} resamples); the verdict names the better policy when the "
        "interval excludes 0.",
        "",
    ]
    if not results["gold"]:
        lines += [f"No gold judge for dataset={results['dataset']['name']}: the judge RM is the only score.", ""]
    if results["base"] is None:
        lines += ["The base policy was left out (policies.base=null): no comparison against base.", ""]
    if not results["comparisons"]:
        return lines + ["One policy only: nothing to compare."]
    columns = [*PAIRED_COLUMNS[:3], f"{level} interval", PAIRED_COLUMNS[4]]
    return lines + _table(columns, paired_rows(results))


def results_markdown(results: dict) -> str:
    s, d = results["settings"], results["dataset"]
    draw = s["sampling"]
    decoding = (
        "greedy"
        if s["greedy"]
        else f"sampling at temperature {draw['temperature']} (top_k {draw['top_k']}, top_p {draw['top_p']}), "
        f"seed {results['seed']}"
    )
    lines = [
        "# Policy comparison",
        "",
        f"{d['prompts']} held-out prompts and {d['pairs']} held-out pairs "
        f"(the first of the test split of dataset={d['name']}); "
        f"model={results['model']}; "
        f"{_judge_label(results)}; {decoding}; up to {draw['max_new_tokens']} new tokens; "
        f"{int(round(s['confidence'] * 100))}% percentile-bootstrap intervals ({s['bootstrap_samples']} resamples).",
        "",
        *_table(HEADLINE_COLUMNS, headline_rows(results)),
        "",
        "Accuracy: implicit-reward accuracy on the held-out pairs; "
        "(LL) = length-normalised log-likelihood accuracy (the base policy).",
        "",
        "## Paired differences",
        "",
        *paired_lines(results),
        "",
        "## All metrics",
        "",
        *_table(FULL_COLUMNS, full_rows(results)),
        "",
    ]
    if results["gold"]:
        families = sorted({f for p in results["policies"].values() for f in p.get("gold_by_family", {})})
        lines += ["## Gold score per family", ""]
        lines += _table(
            ["Method", *families],
            [[n, *(_num(p["gold_by_family"].get(f)) for f in families)] for n, p in results["policies"].items()],
        )
        lines.append("")
    if results["checkpoints"]:
        lines += ["## Checkpoints (each run's trajectory; the last row of each is the policy)", ""]
        lines += _table(
            ["Policy", "Step", "Train s", "Tokens fwd", "Episodes", "Avg reward", "Gold score", "KL / response"],
            [
                [c["policy"], str(c["step"]), _num(c.get("train_seconds"), 1), str(c.get("tokens_forwarded", "–")),
                 str(c.get("episodes", "–")), _num(c["avg_reward"]), _num(c.get("gold_score")), _num(c["kl"], 2)]
                for c in results["checkpoints"]
            ],
        )  # fmt: skip
        lines.append("")
    lines += ["## Runs", ""]
    lines += _table(
        ["Method", "Run directory", "Reference"],
        [[n, p["run_dir"] or "–", p["reference"]] for n, p in results["policies"].items()],
    )
    lines += [
        "",
        f"Wall time {results['wall_time_s']:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in results['time_s'].items())}); "
        f"peak RSS {results['peak_rss_mb']:.0f} MB.",
        "",
    ]
    if results.get("plots"):
        lines += ["## Plots", "", *(f"![{Path(p).stem}]({p})" for p in results["plots"]), ""]
    lines += ["## Definitions", "", DEFINITIONS]
    return "\n".join(lines)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def flat_metrics(results: dict) -> dict[str, float]:
    """``<policy>/<metric>`` scalars for metrics.jsonl and the W&B summary."""
    flat = {}
    for name, p in results["policies"].items():
        for key, value in p.items():
            if isinstance(value, dict) and "mean" in value:
                flat[f"{name}/{key}"] = value["mean"]
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{name}/{key}"] = value
    for c in results["comparisons"]:
        flat[f"paired/{c['a']}-{c['b']}/{c['score']}"] = c["mean_diff"]
    return flat


def sample_table(samples: list[dict], policies: list[str], rows: int, gold: bool) -> tuple[list[str], list[list]]:
    """Generations side by side for the same prompts: prompt, chosen, then each policy's response and scores."""
    columns = ["prompt", "family", "chosen"]
    for name in policies:
        columns += [name, f"{name} rm"] + ([f"{name} gold"] if gold else [])
    data = []
    for s in samples[:rows]:
        row = [s["prompt"], s["family"], s["chosen"]]
        for name in policies:
            row += [s[name]["response"], round(s[name]["rm"], 4)] + ([s[name]["gold"]] if gold else [])
        data.append(row)
    return columns, data


def log_to_wandb(tracker, results: dict, samples: list[dict], rows: int, run_dir: Path) -> None:
    """metrics.jsonl + W&B: the flat metrics, the results table, the side-by-side samples, the plots."""
    flat = flat_metrics(results)
    tracker.log(flat, step=0)
    tracker.log_table("results", FULL_COLUMNS, full_rows(results), step=0)
    if results["comparisons"]:
        tracker.log_table("paired_differences", PAIRED_COLUMNS, paired_rows(results), step=0)
    columns, data = sample_table(samples, list(results["policies"]), rows, results["gold"])
    tracker.log_table("samples", columns, data, step=0)
    tracker.set_summary(flat)
    run = tracker.wandb_run
    if run is None:
        return
    try:
        import wandb

        run.log({f"plots/{Path(p).stem}": wandb.Image(str(run_dir / p)) for p in results.get("plots", [])}, step=0)
    except Exception as err:  # W&B must never fail the evaluation
        log.warning("W&B plots not logged (%s)", err)
