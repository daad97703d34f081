"""Hand-written tournament directories (no training): a plan, run summaries, and per-seed evaluations whose
per-prompt scores are chosen so every interval and verdict can be worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

from rlhf.tournament.plan import EVALUATE, Plan, save_plan

NO_WANDB = {"name": "none", "project": None, "entity": None, "group": None, "mode": "disabled", "init_timeout": 60}
PROMPTS = 4


def fake_plan(directory: Path, seeds: int = 2, arms=("dpo", "ppo"), dataset: str = "hh_synthetic", **extra) -> Plan:
    return Plan(
        directory=Path(directory).resolve(),
        seeds=tuple(range(seeds)),
        arms=tuple(arms),
        dataset=dataset,
        group="tournament-test",
        logger=NO_WANDB,
        python="python",
        **extra,
    )


def write_summary(run_dir: Path, **summary) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps({"status": "finished", **summary}))
    return run_dir


# Per seed, every prompt's (judge, gold, kl) of each method; constant within a seed, so only the seeds vary:
#   base    judge 0, gold 0,   kl 0
#   dpo     judge 1, gold 0.5, kl 2
#   ppo     judge 2 in seed 0 and 0 in seed 1 (PPO - DPO: +1 / -1), gold 0.8, kl 1 / 3
#   chosen  judge 0.5, gold 1
SCORES = {
    "base": [(0.0, 0.0, 0.0), (0.0, 0.0, 0.0)],
    "dpo": [(1.0, 0.5, 2.0), (1.0, 0.5, 2.0)],
    "ppo": [(2.0, 0.8, 1.0), (0.0, 0.8, 3.0)],
}


def write_evaluation(plan: Plan, seed: int) -> Path:
    directory = plan.job_dir(EVALUATE, seed)
    directory.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "index": i,
            "prompt": f"prompt {i}",
            "chosen_rm": 0.5,
            "chosen_gold": 1.0,
            **{
                name: {"response": "r", "rm": s[seed][0], "gold": s[seed][1], "kl": s[seed][2]}
                for name, s in SCORES.items()
            },
        }
        for i in reversed(range(PROMPTS))  # out of order: the reader sorts by index
    ]
    (directory / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = {
        "policies": {name: {"algo": name} for name in SCORES},
        "base": "base",
        "gold": True,
        "model": "tiny_llama",
        "settings": {"bootstrap_samples": 400, "confidence": 0.95},
        "judge": {"run_dir": str(plan.job_dir("rm", seed))},
        "wall_time_s": 30.0,
        "peak_rss_mb": 900.0,
    }
    (directory / "results.json").write_text(json.dumps(results))
    return directory


def fake_tournament(directory: Path) -> Plan:
    """A finished 2-seed dpo vs ppo tournament on hh_synthetic (see SCORES), its costs partly recorded."""
    plan = fake_plan(directory)
    save_plan(plan)
    for seed in plan.seeds:
        write_summary(plan.job_dir("rm", seed), algo="rm", wall_time_s=10.0 * (seed + 1), peak_rss_mb=500.0)
        write_summary(plan.job_dir("dpo", seed), algo="dpo", wall_time_s=40.0, peak_rss_mb=800.0, episodes=64)
        ppo = {
            "algo": "ppo",
            "wall_time_s": 100.0,
            "peak_rss_mb": 1000.0,
            "episodes": 32,
            "phase_seconds": {"generation": 50.0, "update": 30.0, "other": 20.0},
            "reward_model": str(plan.job_dir("rm", seed)),
            "kl_start": 0.0,
            "kl_final": 1.5,
            "rm_score_start": 0.0,
            "rm_score_final": 1.2,
            "gold_score_start": 0.0,
            "gold_score_final": 0.7,
        }
        if seed == 0:
            ppo["tokens_forwarded"] = 1000
        write_summary(plan.job_dir("ppo", seed), **ppo)
        write_evaluation(plan, seed)
    return plan
