"""PPO iterations by phase: shared base (algo.share_base=true) vs a model per role (false), and, with
``--peer-python``, TRL 1.12's PPOTrainer (bench/peer_ppo.py) on the same settings in the same run.

    python -m bench.ppo_iteration                                   # SmolLM2-135M, 3 repeats x 4 iterations
    python -m bench.ppo_iteration --repeats 1 --iterations 2 model=tiny_llama           # smoke test
    python -m bench.ppo_iteration --configs shared,shared_vhead,peer --peer-python PEER/bin/python  # make bench-peer
    python -m bench.ppo_iteration hardware.micro_batch_size=2       # extra arguments are Hydra overrides

Settings (the issue's, overridable): batch 8 prompts, 48 new tokens, 2 PPO epochs, one minibatch, the
hardware profile's micro batch (cpu: 8), 8 held-out prompts for the framework's start / final
evaluation, a checkpoint only at the end, ``logger=none``. The reward model is a short rm run
(``--rm-steps``) on the same model and data made for this benchmark (its quality does not change the
cost of an iteration), or ``--reward-model DIR``.

Each configuration runs in its own process; repeats are interleaved. The first iteration is warm-up
and not counted; per run the median over the others is taken, then min / median / max over repeats.
Phases (metrics.jsonl of our run): rollout = generation (keeping the old-policy log-probs at full
precision); score = reference (and, under autocast, old-policy) log-probs, values and reward-model
scores; update = advantages + PPO epochs. For the peer (no phase timers of its own): rollout =
``batch_generation``, score = its no-grad ``forward`` / ``get_reward`` calls, update = the rest of the
iteration. Tokens/s = generated tokens (up to and including EOS) per second
of the whole iteration; gen tokens/s per second of generation. Peak RSS is the whole process, model
loading and (ours) the held-out evaluation included.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench import common

# shared_bf16: share_base=true under bf16 autocast (hardware.bf16);
# shared_vhead: share_base=true, algo.value_model=policy
CONFIGS = ("shared", "separate", "shared_bf16", "shared_vhead", "peer")
PHASES = (
    "time/iteration",
    "time/rollout",
    "time/score",
    "time/update",
    "perf/tokens_per_s",
    "perf/gen_tokens_per_s",
    "response/length",
)


def ppo_overrides(args: argparse.Namespace, rm_dir: Path) -> list[str]:
    return [
        "algo=ppo",
        f"algo.iterations={args.iterations}",
        "algo.batch_size=8",
        "algo.sampling.max_new_tokens=48",
        "algo.ppo_epochs=2",
        "algo.num_mini_batches=1",
        "algo.eval_prompts=8",
        f"algo.save_every={args.iterations}",
        f"algo.reward_model={rm_dir}",
        "logger=none",
        *args.overrides,
    ]


def reward_model(args: argparse.Namespace, root: Path) -> Path:
    """--reward-model, or a short rm run on the same model and data (the PPO-only overrides left out)."""
    if args.reward_model:
        return Path(args.reward_model).resolve()
    shared = [o for o in args.overrides if not o.lstrip("+~").startswith("algo")]
    print(f"training a {args.rm_steps}-step reward model for the benchmark ...", flush=True)
    return common.train(
        ["algo=rm", f"algo.max_steps={args.rm_steps}", "logger=none", "dataset.max_eval_rows=16", *shared], root, "rm"
    )


def peer_spec(overrides: list[str], rm_dir: Path, path: Path) -> None:
    """What bench/peer_ppo.py needs, from the config our run composes: settings, and the prompts our run
    draws (prompt_indices) tokenized by our rollout code, so both sides see the same token ids."""
    from rlhf.algos.ppo.loop import prompt_indices
    from rlhf.config import DatasetSettings, ModelSettings, from_node
    from rlhf.data.preference import load_preference_splits
    from rlhf.modeling.generation import cut_prompts, encode_prompts
    from rlhf.modeling.models import load_tokenizer

    cfg = common.compose(overrides)
    algo, hw = cfg.algo, cfg.hardware
    directory = common.model_dir(cfg)
    tokenizer = load_tokenizer(directory, from_node(ModelSettings, cfg.model, "model"))
    train = load_preference_splits(from_node(DatasetSettings, cfg.dataset, "dataset")).train
    order = [
        i for step in range(1, algo.iterations + 1) for i in prompt_indices(len(train), algo.batch_size, step, cfg.seed)
    ]
    prompt_ids = [
        encode_prompts(tokenizer, cut_prompts(tokenizer, [train[i]["prompt"]], algo.sampling.max_prompt_length), "cpu")[
            0
        ][0].tolist()
        for i in order
    ]
    spec = {
        "model_dir": directory,
        "pad_token": tokenizer.pad_token,
        "rm_adapter": str(rm_dir / "adapter"),
        "prompt_ids": prompt_ids,
        "seed": cfg.seed,
        "dtype": hw.dtype,
        "bf16": hw.bf16,
        "gradient_checkpointing": hw.gradient_checkpointing,
        "num_threads": hw.num_threads,
        "micro_batch_size": min(hw.micro_batch_size, algo.batch_size // algo.num_mini_batches),
        "lora": {
            "r": cfg.lora.r,
            "alpha": cfg.lora.alpha,
            "dropout": cfg.lora.dropout,
            "target_modules": list(cfg.lora.target_modules),
        },
        **{key: algo.sampling[key] for key in ("max_new_tokens", "temperature")},
        **{
            key: algo[key]
            for key in (
                "iterations",
                "batch_size",
                "num_mini_batches",
                "ppo_epochs",
                "missing_eos_penalty",
                "kl_coef",
                "kl_estimator",
                "cliprange",
                "cliprange_value",
                "vf_coef",
                "gamma",
                "lam",
                "whiten_rewards",
                "learning_rate",
                "lr_scheduler_type",
                "adam_eps",
            )
        },
    }
    path.write_text(json.dumps(spec) + "\n", encoding="utf-8")


def summarise_iterations(rows: list[dict]) -> dict:
    """Median of each phase over the iterations after the first (warm-up)."""
    timed = [r for r in rows if "time/iteration" in r][1:]
    out = {key: common.med(common.spread(r.get(key) for r in timed)) for key in PHASES}
    out["iterations_timed"] = len(timed)
    return out


def run_once(
    name: str, repeat: int, args: argparse.Namespace, root: Path, overrides: list[str], spec: Path | None
) -> dict:
    label = f"{name}-{repeat}"
    if name == "peer":
        out = root / label
        # -m from the repo root (run_logged's cwd): bench/__init__.py is empty, so the peer venv imports no rlhf
        common.run_logged(
            [args.peer_python, "-m", "bench.peer_ppo", str(spec), str(out)], root / f"{label}.log", "peer_ppo.py"
        )
        summary = common.read_json(out / "summary.json")
        rows = [{**r, "time/update": r["time/update_and_other"]} for r in summary["iterations"]]
    else:
        variant = {"shared_bf16": ["hardware.bf16=true"], "shared_vhead": ["algo.value_model=policy"]}.get(name, [])
        run_dir = common.train(
            [*overrides, f"algo.share_base={str(name.startswith('shared')).lower()}", *variant], root, label
        )
        summary = common.read_json(run_dir / "summary.json")
        # update = advantages (GAE, whitening: milliseconds) + the PPO epochs, as the peer's "rest of the iteration"
        rows = [
            {**r, "time/update": r["time/update"] + r.get("time/advantages", 0.0)} if "time/update" in r else r
            for r in common.read_jsonl(run_dir / "metrics.jsonl")
        ]
    record = {
        **summarise_iterations(rows),
        "peak_rss_mb": summary["peak_rss_mb"],
        "wall_time_s": summary["wall_time_s"],
    }
    print(
        f"  {label}: {record['time/iteration']:.2f} s/iteration, {record['peak_rss_mb']:.0f} MB peak, "
        f"{record['wall_time_s']:.0f} s",
        flush=True,
    )
    return record


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ppo_iteration",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (default 3)")
    parser.add_argument(
        "--iterations", "--steps", type=int, default=4, help="PPO iterations per run; the first is warm-up (default 4)"
    )
    parser.add_argument(
        "--configs",
        default=None,
        help="comma-separated, of: " + ", ".join(CONFIGS) + " (default all but peer; + peer with --peer-python)",
    )
    parser.add_argument(
        "--peer-python", default=None, help="python of the trl==1.12.0 virtualenv (make bench-peer builds it)"
    )
    parser.add_argument(
        "--reward-model",
        default=None,
        help="a finished rm run directory on the same model (default: train a short one)",
    )
    parser.add_argument("--rm-steps", type=int, default=4, help="steps of the benchmark's own reward model (default 4)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary run directories and logs (path printed)"
    )
    parser.add_argument(
        "--section",
        default=None,
        help="section of the results file (default ppo_iteration, ppo_vs_trl_1_12 with the peer)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. model=tiny_llama")
    args = parser.parse_args(argv)
    default = "shared,separate,shared_bf16,shared_vhead" + (",peer" if args.peer_python else "")
    names = [n.strip() for n in (args.configs or default).split(",") if n.strip()]
    if sorted(set(names) - set(CONFIGS)):
        parser.error(f"unknown --configs {sorted(set(names) - set(CONFIGS))}: valid are {', '.join(CONFIGS)}")
    if "peer" in names and not args.peer_python:
        parser.error("--configs peer needs --peer-python (make bench-peer builds the trl==1.12.0 virtualenv)")
    if args.iterations < 2:
        parser.error("--iterations must be >= 2: the first is warm-up and not counted")

    tmp = tempfile.mkdtemp(prefix="rlhf-bench-ppo-")
    root = Path(tmp)
    rm_dir = reward_model(args, root)
    overrides = ppo_overrides(args, rm_dir)
    cfg = common.compose(overrides)
    spec = None
    if "peer" in names:
        spec = root / "peer_spec.json"
        peer_spec(overrides, rm_dir, spec)
    print(
        f"## PPO iteration\n\nmodel={cfg.model.name}, batch {cfg.algo.batch_size}, "
        f"{cfg.algo.sampling.max_new_tokens} new tokens, {cfg.algo.ppo_epochs} PPO epochs, "
        f"{cfg.algo.num_mini_batches} minibatch(es), micro batch {cfg.hardware.micro_batch_size}, "
        f"{args.iterations} iterations (first not counted) x {args.repeats} repeats, "
        f"overrides {args.overrides or 'none'}, "
        f"allocator {common.allocator()}\n",
        flush=True,
    )

    runs: dict[str, list[dict]] = {name: [] for name in names}
    for repeat in range(1, args.repeats + 1):
        for name in names:
            runs[name].append(run_once(name, repeat, args, root, overrides, spec))

    keys = (*PHASES, "peak_rss_mb", "wall_time_s")
    results = {
        name: {key: common.spread(r[key] for r in runs[name]) for key in keys} | {"runs": runs[name]} for name in names
    }
    label = {
        "shared": "ours, share_base=true",
        "separate": "ours, share_base=false",
        "shared_bf16": "ours, share_base=true, bf16 autocast",
        "shared_vhead": "ours, share_base=true, value_model=policy",
        "peer": "TRL 1.12 PPOTrainer",
    }
    rows = [
        [
            label[n],
            *(common.show(results[n][k]) for k in ("time/iteration", "time/rollout", "time/score", "time/update")),
            common.show(results[n]["perf/tokens_per_s"], 1),
            common.show(results[n]["perf/gen_tokens_per_s"], 1),
            common.show(results[n]["peak_rss_mb"], 0),
        ]
        for n in names
    ]
    print(
        "\n"
        + common.table(
            ["config", "s/iteration", "rollout s", "score s", "update s", "tokens/s", "gen tokens/s", "peak RSS MB"],
            rows,
        )
    )

    def ratios(a: str, b: str) -> dict:
        return {
            "time": common.ratio(common.med(results[a]["time/iteration"]), common.med(results[b]["time/iteration"])),
            "peak_rss": common.ratio(common.med(results[a]["peak_rss_mb"]), common.med(results[b]["peak_rss_mb"])),
        }

    # (results key, numerator, denominator, label, time target, memory target); None = no target
    comparisons = [
        ("shared_vs_separate", "shared", "separate", "share_base=true / false", 1.1, 0.5),
        ("shared_vs_peer", "shared", "peer", "ours (shared) / TRL 1.12 PPOTrainer", 0.7, 0.5),
        ("bf16_vs_fp32", "shared_bf16", "shared", "bf16 autocast / fp32 (share_base=true)", None, None),
        (
            "value_on_policy_vs_peer",
            "shared_vhead",
            "peer",
            "ours (shared, value_model=policy) / TRL 1.12 PPOTrainer",
            0.7,
            0.5,
        ),
        (
            "value_on_policy_vs_adapter",
            "shared_vhead",
            "shared",
            "value_model=policy / adapter (share_base=true)",
            None,
            None,
        ),
        ("separate_vs_peer", "separate", "peer", "ours (separate) / TRL 1.12 PPOTrainer", None, None),
    ]

    def show(value: float | None, target: float | None) -> str:
        return f"{value:.2f}x" if target is None else common.verdict(value, target)

    measured, lines = {}, []
    for key, a, b, text, time_target, memory_target in comparisons:
        if a in names and b in names:
            measured[key] = r = ratios(a, b)
            lines.append([text, show(r["time"], time_target), show(r["peak_rss"], memory_target)])
    if lines:
        print("\nMeasured ratios (medians over repeats):\n")
        print(common.table(["ratio", "s/iteration", "peak RSS"], lines))

    data = {
        "model": cfg.model.name,
        "iterations": args.iterations,
        "repeats": args.repeats,
        "overrides": args.overrides,
        "settings": {
            "max_new_tokens": cfg.algo.sampling.max_new_tokens,
            **{k: cfg.algo[k] for k in ("batch_size", "ppo_epochs", "num_mini_batches")},
        }
        | {"micro_batch_size": cfg.hardware.micro_batch_size},
        "reward_model": str(rm_dir) if args.reward_model else f"{args.rm_steps}-step rm run made for the benchmark",
        "allocator": common.allocator(),
        "configs": results,
        "ratios": measured,
        "run_root": tmp if args.keep else None,
    }
    section = args.section or ("ppo_vs_trl_1_12" if "peer" in names else "ppo_iteration")
    return common.finish(section, data, tmp, args.keep)


if __name__ == "__main__":
    main()
