"""Seeded arms inside one evaluate.py run: policies named ``<arm>_s<seed>`` (``+policies.ppo_s0=RUN
+policies.ppo_s1=RUN ... +policies.ppo_lr1e3_s0=RUN ...``) grouped into arms; each arm's score against base,
per seed and over seeds, and each arm against a baseline arm, paired by seed and prompt.

    python -m bench.eval_seeds outputs/evaluate/<timestamp> [more evaluations] [--baseline ppo] [--score gold]
        [--section NAME]

Several evaluations pool their seeds when base's scores in each are the same prompt for prompt (the same prompts
and sampling seed, so every policy drew from one stream): a later evaluation of fresh seeds joins an earlier one.

Every policy answered the same prompts, so differences are taken prompt by prompt (a prompt's score: the mean of
its ``samples_per_prompt`` draws, as evaluate.py scores it). Per seed: the paired bootstrap over prompts
(rlhf.evaluation.metrics.paired_difference); over seeds: the crossed interval, seeds x the same prompts
(rlhf.tournament.stats). Against the baseline, seed s of an arm is paired with seed s of the baseline (the same
reward model, the same prompts). Policies without a ``_s<seed>`` suffix (base, sft, ...) are not arms.

One draw of base serves every seed, and that is enough: in one evaluation base answers each prompt once, so its
sampling noise on prompt p is the same in every seed's difference (arm_s - base)[p]. That is a shared prompt effect,
and the crossed interval counts it (its prompt term, estimated from how the prompt means vary), where the nested
bootstrap did not. Separate base draws per seed would move that noise into the per-seed term instead; the interval
would be about as wide and would cost one more generation per seed.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench import common
from rlhf.evaluation.metrics import Interval, paired_difference, verdict
from rlhf.tournament.stats import crossed_interval, paired_differences

SEEDED = re.compile(r"^(?P<arm>.+)_s(?P<seed>\d+)$")  # ppo_lr1e3_s2 -> arm ppo_lr1e3, seed 2


def read_arms(run_dir: Path, score: str) -> tuple[dict[str, dict[int, dict]], dict]:
    """({arm: {seed: {score: [P], kl: [P]}}}, base's {score, kl}) from an evaluation's results.json, samples.jsonl."""
    results, rows, base = common.read_evaluation(run_dir)

    def column(name: str) -> dict:
        values = [row[name].get(score) for row in rows]
        if any(v is None for v in values):
            raise SystemExit(f"{run_dir}: samples.jsonl has no {score!r} score for {name} (--score gold or rm)")
        return {"score": np.array(values, dtype=np.float64), "kl": np.array([row[name]["kl"] for row in rows])}

    arms: dict[str, dict[int, dict]] = defaultdict(dict)
    for name in results["policies"]:
        if (match := SEEDED.match(name)) and name != base:
            arms[match["arm"]][int(match["seed"])] = column(name)
    if not arms:
        raise SystemExit(f"{run_dir}: no policy is named <arm>_s<seed> (e.g. +policies.ppo_s0=RUN): nothing to group")
    return dict(arms), column(base)


def read_pooled(run_dirs: list[Path], score: str) -> tuple[dict[str, dict[int, dict]], dict]:
    """read_arms over several evaluations, their arms' seeds pooled; each must have scored base identically (else
    their policies did not answer the same draws and cannot be paired), and no arm's seed may come twice."""
    arms, base = read_arms(run_dirs[0], score)
    for run_dir in run_dirs[1:]:
        more, more_base = read_arms(run_dir, score)
        if not np.array_equal(more_base["score"], base["score"]):
            raise SystemExit(
                f"{run_dir}: base's {score} scores differ from {run_dirs[0]}'s: pool only evaluations with the same "
                "dataset, evaluation.n_prompts and seed (then base answers the same draws)"
            )
        for arm, seeds in more.items():
            if twice := sorted(set(seeds) & set(arms.get(arm, {}))):
                raise SystemExit(f"{run_dir}: {arm} seed(s) {twice} are in an earlier evaluation too: give each once")
            arms.setdefault(arm, {}).update(seeds)
    return arms, base


def _cell(stat: Interval) -> str:
    return f"{stat.mean:+.3f} [{stat.low:+.3f}, {stat.high:+.3f}]"


def compare(arms: dict, base: dict, baseline: str | None, samples: int, confidence: float) -> dict[str, dict]:
    """Per arm: per seed (sorted) its difference from base and whether that excludes 0; over seeds; against the
    baseline arm (paired on the seeds both have)."""
    if baseline is not None and baseline not in arms:
        raise SystemExit(f"--baseline {baseline!r} is not an arm; the arms are: {sorted(arms)}")
    out = {}
    for name, seeds in arms.items():
        order = sorted(seeds)
        per_seed = [paired_difference(seeds[s]["score"], base["score"], samples, confidence) for s in order]
        over = crossed_interval([seeds[s]["score"] - base["score"] for s in order], confidence)
        row = {
            "seeds": order,
            "per_seed": [[d.mean, d.low, d.high] for d in per_seed],
            "seeds_excluding_0": sum(d.low > 0 for d in per_seed),
            "over_seeds": [over.mean, over.low, over.high],
            "over_seeds_verdict": verdict(over, name, "base", confidence),
            "kl_mean": float(np.mean([seeds[s]["kl"].mean() for s in order])),
            "vs_baseline": None,
        }
        if baseline is not None and name != baseline:
            shared = [s for s in order if s in arms[baseline]]
            if shared:
                diff = crossed_interval(
                    paired_differences(
                        [seeds[s]["score"] for s in shared], [arms[baseline][s]["score"] for s in shared]
                    ),
                    confidence,
                )
                row["vs_baseline"] = [diff.mean, diff.low, diff.high]
                row["vs_baseline_seeds"] = shared
                row["vs_baseline_verdict"] = verdict(diff, name, baseline, confidence)
        out[name] = row
    return out


def table(rows: dict[str, dict], score: str, baseline: str | None) -> str:
    def cell(v):
        return _cell(Interval(mean=v[0], low=v[1], high=v[2], n=0))

    return common.table(
        [
            "arm",
            "seeds",
            f"{score} - base, per seed",
            "seeds excluding 0",
            "over seeds",
            "verdict",
            "KL (mean)",
            f"- {baseline or 'baseline'}",
            "verdict",
        ],
        [
            [
                name,
                " ".join(map(str, r["seeds"])),
                " / ".join(cell(v) for v in r["per_seed"]),
                f"{r['seeds_excluding_0']}/{len(r['seeds'])}",
                cell(r["over_seeds"]),
                r["over_seeds_verdict"],
                f"{r['kl_mean']:.2f}",
                cell(r["vs_baseline"]) if r["vs_baseline"] else "(baseline)" if name == baseline else "-",
                r.get("vs_baseline_verdict", "-"),
            ]
            for name, r in rows.items()
        ],
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.eval_seeds", description=__doc__.splitlines()[0])
    parser.add_argument(
        "run_dirs", type=Path, nargs="+", help="evaluate.py run directories with policies <arm>_s<seed>, pooled"
    )
    parser.add_argument("--baseline", help="the arm every other arm is paired against (e.g. ppo)")
    parser.add_argument("--score", default="gold", help="gold (hh_synthetic) or rm (the judge reward model)")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--section", help="also merge the numbers into the bench results file")
    args = parser.parse_args(argv)
    arms, base = read_pooled(args.run_dirs, args.score)
    rows = compare(arms, base, args.baseline, args.samples, args.confidence)
    print(table(rows, args.score, args.baseline))
    out = {"run_dirs": [str(d) for d in args.run_dirs], "score": args.score, "baseline": args.baseline, "arms": rows}
    if args.section:
        print(f"\nwritten to {common.save_results(args.section, out)}")
    return out


if __name__ == "__main__":
    main()
