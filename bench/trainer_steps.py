"""rm and DPO steps through train.py against TRL called directly (bench/direct_trl.py): seconds per
step, peak RSS, MFU, and the framework's overhead as a ratio; DPO with precompute_ref_log_probs on and off.

    python -m bench.trainer_steps                                  # SmolLM2-135M (the default), 3 repeats x 6 steps
    python -m bench.trainer_steps --repeats 1 --steps 3 model=tiny_llama     # smoke test, seconds
    python -m bench.trainer_steps --configs rm_ours,rm_direct algo.batch_size=4   # extra arguments are Hydra overrides

Every configuration runs in its own process, the repeats interleaved (ours, direct, ours, ...) so slow
drift of the machine hits both sides alike. Each run trains ``--steps`` optimizer steps on exactly
steps x batch_size training pairs (``dataset.max_train_rows``), with ``algo.logging_steps=1``,
``logger=none`` and 32 held-out pairs for the framework's evaluation after training. The first step is
warm-up and is not counted: seconds per step is the mean of the others, their total time over their
number (with ``algo.group_by_length`` steps differ in length by design, so the mean, not the median, is
the throughput; bench/steptimer.py times both sides with the same callback, and both get the same
batches in the same order). Peak RSS is the whole process (summary.json); ``train_peak_rss_mb`` is
the peak when training ended, before the framework's held-out evaluation.

MFU = (FLOPs per step / seconds per step) / measured fp32 matmul peak (bench/machine.py), with
FLOPs per step = k * N * T: T = non-padding tokens per step (TRL's ``num_tokens``), N = the parameters
on the trained path (decoder without embeddings, + the LM head's vocab x hidden where logits are
computed: DPO yes, the reward model no), k = 6 for a trained forward + backward (the standard 6NT
convention; with LoRA the frozen base needs no weight gradients, so the FLOPs actually executed are
nearer 4NT and this convention overstates the utilisation by up to 1.5x), + 2 for DPO's reference
forward when it is not precomputed. Attention's T^2 term is left out.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench import common
from bench.steptimer import per_step

# name -> (algo, side, extra overrides)
CONFIGS = {
    "rm_ours": ("rm", "ours", []),
    "rm_direct": ("rm", "direct", []),
    "dpo_ours": ("dpo", "ours", []),
    "dpo_direct": ("dpo", "direct", []),
    "dpo_precompute_ours": ("dpo", "ours", ["algo.precompute_ref_log_probs=true"]),
    "dpo_precompute_direct": ("dpo", "direct", ["algo.precompute_ref_log_probs=true"]),
    # bf16 autocast on the same profile (= hardware=cpu_bf16 on CPU)
    "rm_ours_bf16": ("rm", "ours", ["hardware.bf16=true"]),
    "dpo_ours_bf16": ("dpo", "ours", ["hardware.bf16=true"]),
}
DEFAULT_CONFIGS = "rm_ours,rm_direct,dpo_ours,dpo_direct,dpo_precompute_ours,rm_ours_bf16,dpo_ours_bf16"
HELD_OUT_PAIRS = 32


def flops_factor(algo: str, precompute: bool) -> int:
    """k in FLOPs = k * N * T (see the module docstring)."""
    return 6 if algo == "rm" or precompute else 8


def overrides_for(algo: str, extra: list[str], args: argparse.Namespace) -> list[str]:
    batch = int(common.compose([f"algo={algo}", *args.overrides]).algo.batch_size)
    return [
        f"algo={algo}",
        f"algo.max_steps={args.steps}",
        "algo.logging_steps=1",
        "logger=none",
        f"dataset.max_train_rows={args.steps * batch}",
        f"dataset.max_eval_rows={HELD_OUT_PAIRS}",
        *extra,
        *args.overrides,
    ]


def run_once(name: str, repeat: int, args: argparse.Namespace, root: Path) -> dict:
    algo, side, extra = CONFIGS[name]
    overrides = overrides_for(algo, extra, args)
    label = f"{name}-{repeat}"
    steps_file = root / f"{label}.steps.json"
    if side == "ours":
        run_dir = common.train(overrides, root, label, steps_file)
        summary = common.read_json(run_dir / "summary.json")
    else:
        out = root / label
        common.run_logged(
            [sys.executable, "-m", "bench.direct_trl", algo, str(out), *overrides],
            root / f"{label}.log",
            f"direct_trl.py {algo}",
        )
        summary = common.read_json(out / "summary.json")
        steps_file = out / "steps.json"
    steps = common.read_json(steps_file)
    timed = per_step(steps, skip=1)
    record = {
        "step_s": sum(timed["step_s"]) / len(timed["step_s"]),
        "steps_timed": len(timed["step_s"]),
        "tokens_per_step": timed["tokens_per_step"],
        "peak_rss_mb": summary["peak_rss_mb"],
        "train_peak_rss_mb": round(steps["train_peak_rss_mb"], 1),
        "wall_time_s": summary["wall_time_s"],
    }
    print(
        f"  {label}: {record['step_s']:.2f} s/step, {record['peak_rss_mb']:.0f} MB peak, {record['wall_time_s']:.0f} s",
        flush=True,
    )
    return record


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m bench.trainer_steps",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (default 3)")
    parser.add_argument(
        "--steps", type=int, default=6, help="optimizer steps per run; the first is warm-up (default 6)"
    )
    parser.add_argument(
        "--configs",
        default=DEFAULT_CONFIGS,
        help=f"comma-separated, of: {', '.join(CONFIGS)} (default {DEFAULT_CONFIGS})",
    )
    parser.add_argument(
        "--peak-gflops", type=float, default=None, help="fp32 peak for MFU (default: measured now, bench/machine.py)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary run directories and logs (path printed)"
    )
    parser.add_argument(
        "--section", default="trainer_steps", help="section of the results file (default trainer_steps)"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. model=tiny_llama")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown --configs {unknown}: valid are {', '.join(CONFIGS)}")
    if args.steps < 2:
        parser.error("--steps must be >= 2: the first step is warm-up and not counted")

    if args.peak_gflops is None:
        from bench.machine import matmul_gflops

        args.peak_gflops = matmul_gflops()
    cfg = common.compose(["algo=dpo", *args.overrides])
    params = common.param_counts(common.model_dir(cfg))
    print(
        f"## rm and DPO steps: ours (train.py) vs TRL directly\n\nmodel={cfg.model.name}, {args.steps} steps "
        f"(first not counted) x {args.repeats} repeats, overrides {args.overrides or 'none'}, "
        f"allocator {common.allocator()}, "
        f"fp32 peak {args.peak_gflops:.0f} GFLOP/s\n",
        flush=True,
    )

    tmp = tempfile.mkdtemp(prefix="rlhf-bench-steps-")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for repeat in range(1, args.repeats + 1):
        for name in names:
            runs[name].append(run_once(name, repeat, args, Path(tmp)))

    results, rows = {}, []
    for name in names:
        algo, side, extra = CONFIGS[name]
        precompute = any("precompute_ref_log_probs=true" in o for o in extra + args.overrides)
        n = params["body"] + (params["lm_head"] if algo == "dpo" else 0)
        k = flops_factor(algo, precompute)
        stats = {
            key: common.spread(r[key] for r in runs[name])
            for key in ("step_s", "tokens_per_step", "peak_rss_mb", "train_peak_rss_mb", "wall_time_s")
        }
        tokens, step_s = common.med(stats["tokens_per_step"]), common.med(stats["step_s"])
        mfu = None
        if tokens and step_s:
            mfu = k * n * tokens / step_s / (args.peak_gflops * 1e9)
        results[name] = {**stats, "flops_formula": f"{k} * N * T", "N": n, "mfu": mfu, "runs": runs[name]}
        rows.append(
            [
                name,
                common.show(stats["step_s"]),
                common.show(stats["tokens_per_step"], 0),
                common.show(stats["peak_rss_mb"], 0),
                common.show(stats["train_peak_rss_mb"], 0),
                common.show(stats["wall_time_s"], 1),
                f"{k}NT",
                None if mfu is None else f"{100 * mfu:.1f}%",
            ]
        )
    print(
        "\n"
        + common.table(
            ["config", "s/step", "tokens/step", "peak RSS MB", "RSS at train end MB", "run wall s", "FLOPs", "MFU"],
            rows,
        )
    )

    ratios, ratio_rows = {}, []
    for algo in ("rm", "dpo", "dpo_precompute"):
        ours, direct = results.get(f"{algo}_ours"), results.get(f"{algo}_direct")
        if ours and direct:
            time_ratio = common.ratio(common.med(ours["step_s"]), common.med(direct["step_s"]))
            memory_ratio = common.ratio(common.med(ours["peak_rss_mb"]), common.med(direct["peak_rss_mb"]))
            train_memory_ratio = common.ratio(
                common.med(ours["train_peak_rss_mb"]), common.med(direct["train_peak_rss_mb"])
            )
            ratios[algo] = {"time": time_ratio, "peak_rss": memory_ratio, "train_peak_rss": train_memory_ratio}
            ratio_rows.append(
                [
                    algo,
                    common.verdict(time_ratio, 1.05),
                    common.verdict(memory_ratio, 1.05),
                    None if train_memory_ratio is None else f"{train_memory_ratio:.2f}x",
                ]
            )
    if ratio_rows:
        print("\nOverhead of the framework (ours / direct TRL, medians over repeats):\n")
        print(common.table(["algo", "s/step", "peak RSS", "RSS at train end"], ratio_rows))
    for algo in ("rm", "dpo"):
        mixed, full = results.get(f"{algo}_ours_bf16"), results.get(f"{algo}_ours")
        if mixed and full:
            ratios[f"{algo}_bf16_vs_fp32"] = r = {
                "step_time": common.ratio(common.med(mixed["step_s"]), common.med(full["step_s"])),
                "peak_rss": common.ratio(common.med(mixed["peak_rss_mb"]), common.med(full["peak_rss_mb"])),
            }
            print(
                f"\n{algo} bf16 autocast / fp32 (ours): s/step {r['step_time']:.2f}x, peak RSS {r['peak_rss']:.2f}x "
                f"(MFU above is against the fp32 peak)"
            )
    on, off = results.get("dpo_precompute_ours"), results.get("dpo_ours")
    if on and off:
        ratios["dpo_precompute_vs_not"] = {
            "step_time": common.ratio(common.med(on["step_s"]), common.med(off["step_s"])),
            "wall_time": common.ratio(common.med(on["wall_time_s"]), common.med(off["wall_time_s"])),
            "peak_rss": common.ratio(common.med(on["peak_rss_mb"]), common.med(off["peak_rss_mb"])),
        }
        r = ratios["dpo_precompute_vs_not"]
        print(
            f"\nDPO precompute_ref_log_probs on / off (ours): s/step {r['step_time']:.2f}x, "
            f"run wall time {r['wall_time']:.2f}x "
            f"(the precomputation is outside the steps), peak RSS {r['peak_rss']:.2f}x"
        )

    data = {
        "model": cfg.model.name,
        "steps": args.steps,
        "repeats": args.repeats,
        "overrides": args.overrides,
        "allocator": common.allocator(),
        "peak_gflops_fp32": args.peak_gflops,
        "params": params,
        "configs": results,
        "ratios": ratios,
        "run_root": tmp if args.keep else None,
    }
    return common.finish(args.section, data, tmp, args.keep)


if __name__ == "__main__":
    main()
