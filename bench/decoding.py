"""Decoding speed: PPO's rollouts and evaluate's answers, in tokens/s and as a share of the memory bandwidth.

    python -m bench.decoding                                   # fp32_before, fp32, bf16 on SmolLM2-135M
    python -m bench.decoding --variants bf16,bf16_static_compile --rollouts 1
    python -m bench.decoding --rollouts 1 --eval-runs 0 model=tiny_llama   # smoke test; extra arguments are
                                                                           # Hydra overrides of every variant

What is timed is the framework's own call path. **rollout**: rlhf.modeling.generation.sample through PPO's Roles
(one base, the "policy" LoRA adapter, Roles.precision), on the first ``algo.batch_size`` training prompts,
``algo.rollout_chunk_size`` prompts per generate call, keeping the sampling log-probs exactly when PPO does (full
precision). **evaluate**: the same sample() through evaluate's PolicyBank / PolicyView with the decoding logits
kept for KL (rlhf/evaluation/batching.py), on one generate call's worth of prompts: the first
``evaluation.chunk_size`` test prompts, shortest first (evaluate.py answers ``evaluation.n_prompts`` in such
chunks). The LoRA adapter is freshly initialised: a trained one costs the same.

Per run: tokens/s = response tokens (up to and including EOS) per second of the whole sample() call (prefill,
decoding, log-probs); steps = decoding steps (per chunk, its longest response); **bandwidth share** = bytes of
weights one decoding step reads (the policy's parameters as stored, the input embedding table left out unless
tied to the LM head) x steps/s / the machine's memory bandwidth (bench/machine.py, measured in this invocation):
decoding's counterpart of MFU. 100% would mean every step streams the weights at the bandwidth peak. Speed-ups
are given on tokens/s and on steps/s: variants in another precision sample other responses (more or fewer rows
end early), so tokens/s moves with the draws; steps/s is the time per decoding step of the same batch.

Variants, each in a fresh process, in the order given; each ``--rollouts`` timed rollouts after one warm-up (its
time is reported apart: it holds torch.compile's compilation where there is one), then ``--eval-runs``:

    fp32_before           hardware=cpu as before issue 22: transformers' multinomial draw, the LM head on a
                          strided slice of the hidden states (rlhf/modeling/models.py contiguous_head_input)
    fp32                  hardware=cpu (fp32 weights)
    cpu_bf16_before       hardware=cpu_bf16 as before issue 22: fp32 weights + bf16 autocast, as fp32_before
    bf16                  hardware=cpu_bf16 (bf16 weights + bf16 autocast; decoding in bf16 without autocast)
    bf16_multinomial      bf16 with transformers' multinomial draw instead of generation.InverseCdfDraw
    bf16_strided_head     bf16 without contiguous_head_input
    bf16_static_compile   bf16 with a static KV cache and torch.compile of the forward (transformers'
                          cache_implementation="static" + CompileConfig on CPU)

bf16 variants run only where bf16 is native (rlhf.config.native_bf16): emulated, they take minutes and say
nothing about the machines they are for. Results: the ``decoding`` section of
bench/results/<date>-<host>.json (every run's numbers), and a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import common

# name: (Hydra overrides, what the code path leaves out of today's decoding)
VARIANTS = {
    "fp32_before": (["hardware=cpu"], ("hf_sampling", "strided_head")),
    "fp32": (["hardware=cpu"], ()),
    "cpu_bf16_before": (["hardware=cpu_bf16", "hardware.dtype=float32"], ("hf_sampling", "strided_head")),
    "bf16": (["hardware=cpu_bf16"], ()),
    "bf16_multinomial": (["hardware=cpu_bf16"], ("hf_sampling",)),
    "bf16_strided_head": (["hardware=cpu_bf16"], ("strided_head",)),
    "bf16_static_compile": (["hardware=cpu_bf16"], ("static_compile",)),
}
DEFAULT_VARIANTS = "fp32_before,fp32,bf16"
BASELINE = "fp32_before"  # speed-ups are against it: today's default before issue 22


# --------------------------------------------------------------------------- one variant (a child process)


def _transformers_draw(model, input_ids, attention_mask, config, **kwargs):
    """Decoding as before issue 22: transformers' generate with its own multinomial draw."""
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config, **kwargs)


def _static_compiled(decode):
    """``decode`` with a static KV cache and torch.compile of each decoding step's forward (transformers compiles
    only on accelerators unless its CompileConfig says all devices)."""
    from transformers.generation.configuration_utils import CompileConfig

    compile_config = CompileConfig(fullgraph=False, dynamic=False, mode="default")
    compile_config._compile_all_devices = True

    def static_decode(model, input_ids, attention_mask, config, **kwargs):
        config = copy.deepcopy(config)
        config.cache_implementation, config.compile_config = "static", compile_config
        return decode(model, input_ids, attention_mask, config, **kwargs)

    return static_decode


def _ablate(changes: tuple[str, ...], lm_head) -> None:
    """Switch this process's decoding back to what ``changes`` name (the variants' table above)."""
    import rlhf.algos.ppo.roles as roles_module
    import rlhf.evaluation.policies as policies_module
    from rlhf.modeling import generation, models

    decode = _transformers_draw if "hf_sampling" in changes else generation.decode
    if "static_compile" in changes:
        decode = _static_compiled(decode)
    roles_module.decode = policies_module.decode = decode  # the name each policy view decodes with
    if "strided_head" in changes:
        for key, hook in list(lm_head._forward_pre_hooks.items()):
            if hook is models._contiguous_input:
                del lm_head._forward_pre_hooks[key]


def _policy(cfg):
    """(tokenizer, PEFT model with a fresh "policy" LoRA adapter, Roles over it) as PPO builds them on one base."""
    import torch
    from peft import get_peft_model
    from torch import nn

    from rlhf.algos.ppo.roles import OFF, Role, Roles
    from rlhf.config import HardwareSettings, LoraSettings, ModelSettings, from_node
    from rlhf.modeling.models import float32_head, load_causal_lm, load_tokenizer, lora_config, model_directory

    model = from_node(ModelSettings, cfg.model, "model")
    hardware = from_node(HardwareSettings, cfg.hardware, "hardware")
    path = model_directory(model)
    tokenizer = load_tokenizer(path, model)
    lm = load_causal_lm(path, model, hardware, tokenizer)
    policy = get_peft_model(lm, lora_config(from_node(LoraSettings, cfg.lora, "lora"), "CAUSAL_LM"), "policy")
    lm_head = lm.get_output_embeddings()
    value_head = float32_head(nn.Linear(lm.config.hidden_size, 1, bias=False))
    roles = {
        "policy": Role(policy, "policy", lm_head),
        "reference": Role(policy, OFF, lm_head),
        "value": Role(policy, "policy", value_head),
        "reward": Role(policy, "policy", value_head),
    }
    built = Roles(tokenizer, roles, None, tokenizer, trainable={}, shared=True)
    built.autocast_dtype = torch.bfloat16 if hardware.bf16 else None  # as build_roles
    return tokenizer, policy, built


def weight_bytes(model) -> int:
    """Bytes of weights one decoding step reads: every parameter once as stored (tied ones once), less an input
    embedding table that is not the LM head (a step looks up one row of it per sequence)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    embed, head = base.get_input_embeddings().weight, base.get_output_embeddings().weight
    return total - (embed.numel() * embed.element_size() if embed is not head else 0)


def decoding_steps(rollout, chunk_size: int) -> int:
    """Decoding steps of a rollout: generate stops a chunk when all its rows ended, so each chunk takes as many
    steps as its longest response (EOS included)."""
    from rlhf.modeling.generation import chunk_rows

    lengths = rollout.mask.sum(1)
    return sum(int(lengths[rows].max()) for rows in chunk_rows(len(rollout), chunk_size))


def _timed(run, chunk_size: int) -> dict:
    started = time.perf_counter()
    rollout = run()
    seconds = time.perf_counter() - started
    tokens = int(rollout.mask.sum())
    return {"seconds": seconds, "tokens": tokens, "steps": decoding_steps(rollout, chunk_size), "rows": len(rollout)}


def run_variant(name: str, overrides: list[str], rollouts: int, eval_runs: int) -> dict:
    """Time one variant in this process: a warm-up and ``rollouts`` PPO rollouts, then ``eval_runs`` of evaluate's."""
    import torch

    from rlhf.algos.ppo import Settings as PpoSettings
    from rlhf.config import DatasetSettings, from_node
    from rlhf.data.preference import load_preference_splits
    from rlhf.evaluation.batching import GenerationLogits, shortest_first
    from rlhf.evaluation.policies import PolicyBank
    from rlhf.evaluation.run import Settings as EvalSettings
    from rlhf.modeling.generation import sample

    variant_overrides, changes = VARIANTS[name]
    cfg = common.compose(["algo=ppo", *variant_overrides, *overrides])
    tokenizer, policy, roles = _policy(cfg)
    _ablate(changes, policy.get_base_model().get_output_embeddings())
    data = load_preference_splits(from_node(DatasetSettings, cfg.dataset, "dataset"))
    ppo = from_node(PpoSettings, cfg.algo, "algo")
    prompts = [row["prompt"] for row in data.train[: ppo.batch_size]]

    def rollout():
        return sample(roles, prompts, ppo.sampling, chunk_size=ppo.rollout_chunk_size,
                      with_logprobs=roles.generation_matches_scoring)  # fmt: skip

    torch.manual_seed(cfg.seed)
    warmup = _timed(rollout, ppo.rollout_chunk_size)
    runs = [_timed(rollout, ppo.rollout_chunk_size) for _ in range(rollouts)]
    out = {
        "dtype": str(next(policy.parameters()).dtype).removeprefix("torch."),
        "autocast": roles.autocast_dtype is not None,
        "weight_bytes": weight_bytes(policy),
        "rollout": {"chunk_size": ppo.rollout_chunk_size, "warmup": warmup, "runs": runs},
    }
    if eval_runs:
        eval_cfg = common.compose([*variant_overrides, *_shared(overrides)], config_name="evaluate")
        settings = from_node(EvalSettings, eval_cfg.evaluation, "evaluation")
        test = [row["prompt"] for row in data.test[: settings.chunk_size]]  # one chunk of evaluate's
        ordered = [test[i] for i in shortest_first(tokenizer, test)]
        view = GenerationLogits(PolicyBank(policy, tokenizer).view("policy", None))

        def answers():
            return sample(view, ordered, settings.sampling, settings.greedy, chunk_size=settings.chunk_size,
                          with_logprobs=True)  # fmt: skip

        torch.manual_seed(eval_cfg.seed)
        out["evaluate"] = {"chunk_size": settings.chunk_size, "runs": [_timed(answers, settings.chunk_size)]}
        out["evaluate"]["runs"] += [_timed(answers, settings.chunk_size) for _ in range(eval_runs - 1)]
    return out


def _shared(overrides: list[str]) -> list[str]:
    """The overrides evaluate.yaml also has (no algo.*)."""
    return [o for o in overrides if not o.lstrip("+~").startswith("algo")]


# --------------------------------------------------------------------------- the invocation


def summarize(run: dict, weight_bytes_per_step: int, bandwidth_gbs: float) -> dict:
    """tokens/s, steps/s, ms per step and bandwidth share of one timed run."""
    steps_per_s = run["steps"] / run["seconds"]
    return {
        "tokens_per_s": run["tokens"] / run["seconds"],
        "steps_per_s": steps_per_s,
        "ms_per_step": 1000 / steps_per_s,
        "bandwidth_share": weight_bytes_per_step * steps_per_s / (bandwidth_gbs * 1e9),
    }


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def table_rows(results: dict, bandwidth_gbs: float) -> list[list]:
    baseline = {phase: results.get(BASELINE, {}).get(phase) for phase in ("rollout", "evaluate")}
    rows = []
    for name, result in results.items():
        if "skipped" in result:
            rows.append([name, "-", "-", "-", "-", "-", "-", "-", "-", result["skipped"]])
            continue
        for phase in ("rollout", "evaluate"):
            if phase not in result:
                continue
            runs = [summarize(r, result["weight_bytes"], bandwidth_gbs) for r in result[phase]["runs"]]
            tokens = _median(runs, "tokens_per_s")
            base = baseline[phase]
            speedup = None
            if base and name != BASELINE:
                base_runs = [summarize(r, results[BASELINE]["weight_bytes"], bandwidth_gbs) for r in base["runs"]]
                steps = _median(runs, "steps_per_s") / _median(base_runs, "steps_per_s")
                speedup = f"{tokens / _median(base_runs, 'tokens_per_s'):.2f}x; {steps:.2f}x"
            rows.append([
                name, f"{result['dtype']}{' + autocast' if result['autocast'] else ''}",
                f"{phase} ({result[phase]['runs'][0]['rows']} x chunk {result[phase]['chunk_size']})",
                f"{tokens:.1f}", f"{_median(runs, 'steps_per_s'):.2f}", f"{_median(runs, 'ms_per_step'):.1f}",
                f"{_median(result[phase]['runs'], 'seconds'):.2f}",
                f"{result[phase]['warmup']['seconds']:.1f}" if "warmup" in result[phase] else "-",
                f"{100 * _median(runs, 'bandwidth_share'):.1f}%", speedup,
            ])  # fmt: skip
    return rows


def _child(name: str, args: argparse.Namespace, root: Path) -> dict:
    out = root / f"{name}.json"
    command = [sys.executable, "-m", "bench.decoding", "--child", name, "--out", str(out), "--rollouts",
               str(args.rollouts), "--eval-runs", str(args.eval_runs), *args.overrides]  # fmt: skip
    seconds = common.run_logged(command, root / f"{name}.log", f"bench.decoding {name}")
    print(f"{name}: {seconds:.0f} s", flush=True)
    return common.read_json(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m bench.decoding",
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated (default {DEFAULT_VARIANTS})")
    parser.add_argument("--rollouts", type=int, default=2, help="timed PPO rollouts after the warm-up (default 2)")
    parser.add_argument("--eval-runs", type=int, default=1, help="timed evaluate decodings, 0 = none (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the children's logs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of every variant, e.g. model=tiny_llama")
    args = parser.parse_args(argv)
    if args.child:
        result = run_variant(args.child, args.overrides, args.rollouts, args.eval_runs)
        Path(args.out).write_text(json.dumps(result), encoding="utf-8")
        return result

    from bench.machine import bandwidth_gbs
    from rlhf.config import native_bf16

    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]}: valid ones are {', '.join(VARIANTS)}")
    bandwidth = bandwidth_gbs()
    print(f"memory bandwidth (bench/machine.py, best stream): {bandwidth['memory_gbs']} GB/s", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-decoding-"))
    results = {}
    for name in names:
        if "bf16" in name and not native_bf16():
            results[name] = {"skipped": "not run: no native bf16 here (emulated bf16 is slower than fp32)"}
            continue
        results[name] = _child(name, args, root)
    headers = ["variant", "weights", "phase (rows x chunk)", "tokens/s", "steps/s", "ms/step", "s/run",
               "warm-up s", "bandwidth share", f"vs {BASELINE} (tokens/s; steps/s)"]  # fmt: skip
    print(f"\n## Decoding ({common.allocator()}, memory bandwidth {bandwidth['memory_gbs']} GB/s)\n")
    print(common.table(headers, table_rows(results, bandwidth["memory_gbs"])))
    data = {"bandwidth": bandwidth, "overrides": args.overrides, "rollouts": args.rollouts, "variants": results}
    return common.finish("decoding", data, root, args.keep)


if __name__ == "__main__":
    main()
