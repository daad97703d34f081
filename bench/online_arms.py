"""One PPO iteration against one GRPO and one RLOO rollout at the same number of episodes: seconds and peak memory.

    python -m bench.online_arms                                   # SmolLM2-135M, the arms' default settings
    python -m bench.online_arms --repeats 1 model=tiny_llama      # smoke test, ~2 minutes
    python -m bench.online_arms --reward-model outputs/latest/rm  # reuse a finished rm run

Each arm runs at its defaults (conf/algo/ppo.yaml, grpo.yaml, rloo.yaml): PPO rolls out 16 prompts an iteration
(2 epochs x 2 minibatches: 4 optimizer steps), GRPO and RLOO 16 completions a rollout (4 prompts x 4 generations,
2 iterations x 2 minibatches: 4 optimizer steps), so a rollout is 16 episodes in each. The cost of one rollout
is measured by difference: every arm runs twice, with ``--short`` and ``--long`` rollouts (same held-out
evaluation, same loading), and seconds per rollout = (wall time long - wall time short) / (long - short). That
cancels model loading, the start / final held-out evaluations and saving without timers inside the run. Peak RSS
is the whole process (summary.json) of the long run: model loading and the held-out evaluation included; GRPO
and RLOO hold the reward model as a second model (TRL scores with a separate model), PPO shares one base.

Each run is its own process; repeats are interleaved (ppo, grpo, rloo, ppo, ...). The reward model is a short
rm run (``--rm-steps``) made for the benchmark (its quality does not change the cost), or ``--reward-model DIR``.
Results merge into bench/results/<date>-<host>.json under ``online_arms``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench import common
from bench.ppo_iteration import reward_model  # the same short rm run (or --reward-model)

ARMS = ("ppo", "grpo", "rloo")
STEPS_PER_ROLLOUT = 4  # grpo / rloo: num_mini_batches (2) x num_iterations (2) at their defaults


def arm_overrides(arm: str, rollouts: int, rm_dir: Path, eval_prompts: int, extra: list[str]) -> list[str]:
    """``rollouts`` rollouts of ``arm`` at its defaults, a checkpoint only at the end."""
    if arm == "ppo":
        length = [f"algo.iterations={rollouts}", f"algo.save_every={rollouts}"]
    else:
        steps = rollouts * STEPS_PER_ROLLOUT
        length = [f"algo.max_steps={steps}", f"algo.save_every={steps}"]
    return [
        f"algo={arm}",
        *length,
        f"algo.eval_prompts={eval_prompts}",
        f"algo.reward_model={rm_dir}",
        "logger=none",
        *extra,
    ]


def per_rollout(short: dict, long: dict, rollouts: tuple[int, int]) -> float:
    """Seconds of one rollout (generation, scoring, update) by difference of two runs' wall times."""
    return (long["wall_time_s"] - short["wall_time_s"]) / (rollouts[1] - rollouts[0])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m bench.online_arms",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs of each arm and length (default 2)")
    parser.add_argument("--short", type=int, default=1, help="rollouts of the short run (default 1)")
    parser.add_argument("--long", type=int, default=3, help="rollouts of the long run (default 3)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--eval-prompts", type=int, default=8, help="held-out prompts of every run (default 8)")
    parser.add_argument("--reward-model", default=None, help="a finished rm run on the same model")
    parser.add_argument("--rm-steps", type=int, default=4, help="steps of the benchmark's own reward model")
    parser.add_argument("--keep", action="store_true", help="keep the run directories and logs (path printed)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. model=tiny_llama")
    args = parser.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if set(arms) - set(ARMS):
        parser.error(f"unknown --arms {sorted(set(arms) - set(ARMS))}: valid are {', '.join(ARMS)}")
    if not 1 <= args.short < args.long:
        parser.error(f"--short {args.short} and --long {args.long}: need 1 <= short < long")

    root = Path(tempfile.mkdtemp(prefix="rlhf-bench-arms-"))
    rm_dir = reward_model(args, root)
    lengths = (args.short, args.long)
    print(
        f"## One rollout of 16 episodes: PPO against GRPO and RLOO\n\nrollouts {lengths[0]} vs {lengths[1]} "
        f"(cost by difference), {args.repeats} repeats, overrides {args.overrides or 'none'}, "
        f"allocator {common.allocator()}\n",
        flush=True,
    )
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for repeat in range(1, args.repeats + 1):
        for arm in arms:
            summaries = []
            for n in lengths:
                overrides = arm_overrides(arm, n, rm_dir, args.eval_prompts, args.overrides)
                run_dir = common.train(overrides, root, f"{arm}-{n}-{repeat}")
                summaries.append(common.read_json(run_dir / "summary.json"))
            record = {
                "seconds_per_rollout": per_rollout(*summaries, lengths),
                "episodes_per_rollout": summaries[1]["episodes"] / lengths[1] if "episodes" in summaries[1] else None,
                "peak_rss_mb": summaries[1]["peak_rss_mb"],
                "wall_time_s": [s["wall_time_s"] for s in summaries],
            }
            print(f"  {arm}-{repeat}: {record['seconds_per_rollout']:.1f} s/rollout, "
                  f"{record['peak_rss_mb']:.0f} MB peak", flush=True)  # fmt: skip
            runs[arm].append(record)

    results = {
        arm: {key: common.spread(r[key] for r in runs[arm]) for key in ("seconds_per_rollout", "peak_rss_mb")}
        | {"runs": runs[arm]}
        for arm in arms
    }
    base = results.get("ppo")
    rows = [
        [
            arm,
            common.show(results[arm]["seconds_per_rollout"], 1),
            common.show(results[arm]["peak_rss_mb"], 0),
            _ratio(results[arm], base, "seconds_per_rollout"),
            _ratio(results[arm], base, "peak_rss_mb"),
        ]
        for arm in arms
    ]
    print(common.table(["arm", "s / rollout (16 episodes)", "peak RSS MB", "time vs PPO", "memory vs PPO"], rows))
    return common.finish("online_arms", {"lengths": lengths, "overrides": args.overrides, **results}, root, args.keep)


def _ratio(arm: dict, base: dict | None, key: str) -> str:
    value = common.ratio(common.med(arm[key]), common.med(base[key]) if base else None)
    return "-" if value is None else f"{value:.2f}x"


if __name__ == "__main__":
    main()
