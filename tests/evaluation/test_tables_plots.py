"""results.md and the plots for any set of compared policies (base, DPO, PPO, GRPO, RLOO, ...): made-up
results of evaluate.py's structure, no model."""

from __future__ import annotations

import json

import pytest
from matplotlib.colors import to_hex

from rlhf.evaluation import plots, tables

POLICIES = ("base", "dpo", "ppo", "grpo", "rloo")
FAMILIES = ("advice", "arithmetic")


def interval(mean: float, width: float = 0.1) -> dict:
    return {"mean": mean, "low": mean - width, "high": mean + width, "n": 8}


def policy(name: str, i: int, run_dir: str | None) -> dict:
    out = {
        "run_dir": run_dir,
        "algo": name,
        "adapter": None if name == "base" else f"{run_dir}/adapter",
        "reference": "base",
        "avg_reward": interval(0.1 * i),
        "gold_score": interval(0.05 * i),
        "gold_by_family": {f: 0.05 * i for f in FAMILIES},
        "kl": {**interval(0.5 * i, 0.1 if i else 0.0), "negative_share": 0.0, "max": 1.0 * i},
        "length": 7.5 + i,
        "eos_rate": 0.25,
        "distinct_2": 0.6,
        "win_rate_vs_chosen_rm": interval(0.4),
        "win_rate_vs_chosen_gold": interval(0.3),
        "accuracy": 0.5 + 0.05 * i,
        "accuracy_kind": "length-normalised log-likelihood" if name == "base" else "implicit reward",
        "ll_accuracy": 0.5,
    }
    if name != "base":
        out |= {
            "win_rate_vs_base_rm": interval(0.5 + 0.05 * i),
            "win_rate_vs_base_gold": interval(0.5 + 0.04 * i),
            "reward_delta_vs_base": interval(0.1 * i),
            "gold_delta_vs_base": interval(0.05 * i),
            "reward_hacking": "not flagged",
        }
    return out


def fake_results(run_dirs: dict[str, str] | None = None, names=POLICIES) -> dict:
    run_dirs = run_dirs or {}
    return {
        "policies": {n: policy(n, i, run_dirs.get(n)) for i, n in enumerate(names)},
        "base": "base",
        "chosen": {"avg_reward": interval(0.3), "gold_score": interval(0.4)},
        "comparisons": [
            {
                "a": "ppo",
                "b": "dpo",
                "score": "rm",
                "mean_diff": -0.25,
                "interval": [-0.4, -0.1],
                "n": 8,
                "verdict": "dpo better",
            },
            {
                "a": "ppo",
                "b": "dpo",
                "score": "gold",
                "mean_diff": 0.02,
                "interval": [-0.05, 0.09],
                "n": 8,
                "verdict": "no difference at 95%",
            },
        ],
        "checkpoints": [],
        "judge": {"run_dir": "outputs/rm/x", "reward_max_length": 256},
        "model": "tiny_llama",
        "dataset": {"name": "hh_synthetic", "source": "synthetic", "seed": 0, "prompts": 8, "pairs": 8},
        "settings": {
            "sampling": {"max_new_tokens": 8, "temperature": 0.7, "top_k": 0, "top_p": 1.0},
            "greedy": False,
            "confidence": 0.95,
            "bootstrap_samples": 100,
        },
        "seed": 42,
        "gold": True,
        "time_s": {"load": 1.0},
        "wall_time_s": 3.0,
        "peak_rss_mb": 100.0,
        "plots": [],
    }


def first_cells(lines: list[str], header: list[str]) -> list[str]:
    start = lines.index("| " + " | ".join(header) + " |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line.split(" | ")[0].strip("| "))
    return rows


def test_results_markdown_has_a_row_per_policy_whatever_its_name():
    md = tables.results_markdown(fake_results())
    lines = md.splitlines()
    assert first_cells(lines, tables.HEADLINE_COLUMNS) == list(POLICIES)
    assert first_cells(lines, tables.FULL_COLUMNS) == [*POLICIES, "dataset chosen"]
    assert first_cells(lines, ["A - B", "Score", "Mean difference", "95% interval", "Verdict"]) == ["ppo - dpo"] * 2
    assert "| ppo - dpo | judge RM | -0.250 | [-0.400, -0.100] | dpo better |" in lines
    assert "| ppo - dpo | gold | +0.020 | [-0.050, +0.090] | no difference at 95% |" in lines
    algos = [row[1] for row in tables.full_rows(fake_results())]
    assert algos == [*POLICIES, "–"]


def test_flat_metrics_and_the_sample_table_cover_every_policy():
    flat = tables.flat_metrics(fake_results())
    assert {k.split("/")[0] for k in flat} == {*POLICIES, "paired"}
    assert flat["paired/ppo-dpo/rm"] == -0.25 and flat["paired/ppo-dpo/gold"] == 0.02
    sample = {"prompt": "p", "family": "advice", "chosen": "c"}
    sample |= {n: {"response": f"r-{n}", "rm": 0.5, "gold": 0.1} for n in POLICIES}
    columns, rows = tables.sample_table([sample], list(POLICIES), 4, gold=True)
    assert columns[3:] == [c for n in POLICIES for c in (n, f"{n} rm", f"{n} gold")]
    assert rows[0][3::3] == [f"r-{n}" for n in POLICIES]


def test_each_policy_gets_its_own_colour_in_the_order_given():
    colors = plots.policy_colors(list(POLICIES))
    assert list(colors) == list(POLICIES) and len({to_hex(c) for c in colors.values()}) == len(POLICIES)
    again = plots.policy_colors(["ppo", "grpo"])
    assert again == {"ppo": colors["base"], "grpo": colors["dpo"]}  # by position in this evaluation


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_the_online_arms_plot_score_kl_and_length(algo):
    rows = [
        {"step": s, "loss": 0.1, "reward": 0.2, "objective/scores": 0.3, "kl": 0.01 * s, "entropy": 1.0,
         "completions/mean_length": 6.0, "clip_ratio/low_mean": 0.0, "grad_norm": 1.0}
        for s in (1, 2, 3)
    ] + [{"step": 3, "eval/rm_score": 0.4}]  # fmt: skip
    assert plots.curve_keys(algo, rows) == ["objective/scores", "kl", "completions/mean_length"]


def test_every_plot_is_written_for_five_policies(tmp_path):
    run_dirs = {}
    for algo in POLICIES[1:]:
        run_dir = tmp_path / algo
        run_dir.mkdir()
        keys = plots.CURVE_KEYS[algo]
        rows = [{"step": s, **{k: 0.1 * s for k in keys}} for s in (1, 2, 3)]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        run_dirs[algo] = str(run_dir)
    results = fake_results(run_dirs)
    written = plots.write_all(tmp_path, results, {n: tmp_path / n for n in run_dirs})
    assert written == [plots.SCORES_PNG, plots.REWARD_KL_PNG, plots.CURVES_PNG]
    assert all((tmp_path / name).stat().st_size > 0 for name in written)


def test_paired_section_says_why_a_comparison_is_missing():
    results = fake_results(names=("base",)) | {"comparisons": [], "gold": False, "base": None}
    results["dataset"]["name"] = "hh_rlhf"
    md = tables.results_markdown(results)
    assert "No gold judge for dataset=hh_rlhf: the judge RM is the only score." in md
    assert "The base policy was left out (policies.base=null)" in md
    assert "One policy only: nothing to compare." in md


def test_results_md_flags_hacking_only_on_evidence():
    # issue 39: a default pipeline run (Zen 3) printed "likely reward hacking" for PPO on reward +0.200
    # [-0.023, +0.427] and gold -0.020 [-0.089, +0.051]; a stored flag of the old rule (True) is re-read by today's.
    results = fake_results()
    ppo = results["policies"]["ppo"]
    ppo["reward_delta_vs_base"] = {"mean": 0.2, "low": -0.023, "high": 0.427, "n": 256}
    ppo["gold_delta_vs_base"] = {"mean": -0.02, "low": -0.089, "high": 0.051, "n": 256}
    ppo["reward_hacking"] = True
    md = tables.results_markdown(results)
    assert "hacking" not in md.split("## ")[1]  # the headline's notes
    assert "likely reward hacking" not in md.replace('"likely reward hacking" when', "")
    assert next(r for r in tables.full_rows(results) if r[0] == "ppo")[-1] == "not flagged"

    ppo["reward_delta_vs_base"]["low"] = 0.05  # the reward gain is now significant, gold still flat
    assert "**reward up, gold flat**: reward +0.200 [+0.050, +0.427]" in tables.results_markdown(results)
    ppo["gold_delta_vs_base"] = {"mean": -0.1, "low": -0.15, "high": -0.05, "n": 256}  # and gold surely down
    md = tables.results_markdown(results)
    assert "**likely reward hacking**: reward +0.200 [+0.050, +0.427], gold -0.100 [-0.150, -0.050] vs base" in md
