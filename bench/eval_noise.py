"""How much of an evaluation's uncertainty is sampling noise: from one evaluate.py run with
``evaluation.samples_per_prompt`` k > 1, each policy's paired score difference against base with one response per
prompt (the first of its k, what k = 1 would have drawn: its own stream, so an honest single draw) and with the
mean of all k, and the variance split into the prompts' and the draws'.

    python evaluate.py ... evaluation.samples_per_prompt=4
    python -m bench.eval_noise outputs/evaluate/<timestamp> [--score gold] [--section eval_noise]

Per policy, over the prompts i and their draws j: within = the mean over prompts of the variance of the k draws'
difference d_ij = score_ij - base_ij (sampling noise), between = the variance over prompts of their mean
difference less within / k (how much the prompts differ in truth). A single draw's difference has variance
between + within; the k-draw mean's between + within / k: the interval's half-width shrinks by the square root of
their ratio, which the two measured intervals show.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench import common
from rlhf.evaluation.metrics import paired_difference, verdict


def read_draws(run_dir: Path, score: str) -> tuple[dict[str, np.ndarray], str]:
    """({policy: scores [N, k]}, base's name) from an evaluation's results.json and samples.jsonl."""
    results, rows, base = common.read_evaluation(run_dir)
    k = results["settings"].get("samples_per_prompt", 1)
    if k < 2:
        raise SystemExit(f"{run_dir}: samples_per_prompt={k}: run evaluate.py with evaluation.samples_per_prompt >= 2")
    draws = {}
    for name in results["policies"]:
        each = [row[name].get(f"{score}_each") for row in rows]
        if any(e is None for e in each):
            raise SystemExit(f"{run_dir}: samples.jsonl has no {score}_each for {name} (--score rm or gold)")
        draws[name] = np.array(each, dtype=np.float64)
    return draws, base


def noise_split(diff: np.ndarray) -> tuple[float, float]:
    """(between, within) for per-draw differences [N, k]: the prompts' variance and the draws'."""
    k = diff.shape[1]
    within = float(diff.var(axis=1, ddof=1).mean())
    between = max(float(diff.mean(axis=1).var(ddof=1)) - within / k, 0.0)
    return between, within


def compare(draws: dict[str, np.ndarray], base: str, samples: int, confidence: float) -> dict[str, dict]:
    """Per policy but base: the difference with one draw, with k, and the noise split."""
    out = {}
    for name, scores in draws.items():
        if name == base:
            continue
        diff = scores - draws[base]
        one = paired_difference(scores[:, 0], draws[base][:, 0], samples, confidence)
        all_k = paired_difference(scores.mean(1), draws[base].mean(1), samples, confidence)
        between, within = noise_split(diff)
        out[name] = {
            "prompts": int(diff.shape[0]),
            "k": int(diff.shape[1]),
            "one_draw": [one.mean, one.low, one.high],
            "one_draw_verdict": verdict(one, name, base, confidence),
            "k_draws": [all_k.mean, all_k.low, all_k.high],
            "k_draws_verdict": verdict(all_k, name, base, confidence),
            "between": between,
            "within": within,
            "width_ratio": (all_k.high - all_k.low) / (one.high - one.low) if one.high > one.low else None,
        }
    return out


def table(rows: dict[str, dict], base: str) -> str:
    def cell(v):
        return f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]"

    return common.table(
        [
            "policy",
            "prompts x k",
            f"- {base}, one draw",
            "verdict",
            f"- {base}, mean of k",
            "verdict",
            "width ratio",
            "variance between prompts",
            "within (draws)",
        ],
        [
            [
                name,
                f"{r['prompts']} x {r['k']}",
                cell(r["one_draw"]),
                r["one_draw_verdict"],
                cell(r["k_draws"]),
                r["k_draws_verdict"],
                f"{r['width_ratio']:.2f}" if r["width_ratio"] else "-",
                f"{r['between']:.4f}",
                f"{r['within']:.4f}",
            ]
            for name, r in rows.items()
        ],
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.eval_noise", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="an evaluate.py run directory (samples_per_prompt >= 2)")
    parser.add_argument("--score", default="gold", help="gold (hh_synthetic) or rm (the judge reward model)")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--section", help="also merge the numbers into the bench results file")
    args = parser.parse_args(argv)
    draws, base = read_draws(args.run_dir, args.score)
    rows = compare(draws, base, args.samples, args.confidence)
    print(table(rows, base))
    out = {"run_dir": str(args.run_dir), "score": args.score, "base": base, "policies": rows}
    if args.section:
        print(f"\nwritten to {common.save_results(args.section, out)}")
    return out


if __name__ == "__main__":
    main()
