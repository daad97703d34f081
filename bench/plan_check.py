"""The memory planner (rlhf/plan/) against measured peaks, on CPU at small scale: ``python -m bench.plan_check``.

    python -m bench.plan_check                                  # tiny_llama and SmolLM2-135M, every shape below
    python -m bench.plan_check --models tiny_llama --quick      # one shape each (smoke test, ~1 minute)

Each phase of the real code runs once on the real model (fp32, ``hardware=cpu``, ``lora=r16``): PPO's rollout
(rlhf.modeling.generation.sample), scoring (rlhf.algos.ppo.scoring.score_rollout), update
(rlhf.algos.ppo.loop.ppo_update, its optimizer state made by a zero-gradient step first, as after any earlier
update) and evaluation (rlhf.modeling.held_out.evaluate), on roles built by rlhf.algos.ppo.roles.build_roles
with a fresh reward adapter; and two steps of TRL's RewardTrainer, SFTTrainer and DPOTrainer (the second step
runs with the optimizer state the first made).

Measured peak = the bytes of the tensors alive when the phase starts (every tensor gc sees, each storage once:
weights, adapters, optimizer state, the rollout) + the peak of the bytes the phase allocates and has not freed,
integrated over torch.profiler's memory events (profile_memory=True: every CPU allocation and free, as the CPU
allocator reports them). That is what torch.cuda.max_memory_allocated would count on a GPU; not RSS, which
holds Python, the libraries and the allocator's free pages. Predicted = rlhf.plan's formula at the shapes the
phase really ran: the padded prompt width and the longest response of the rollout (a GPU plan uses
max_prompt_length and max_new_tokens, the worst case), the longest batch a trainer step saw.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from bench import common

# hardware profile -> (chunk = prompts, max new tokens, update micro batch). hardware=cpu (fp32) keeps the sampling
# logits, which then dominate the rollout; cpu_bf16 (fp32 weights, bf16 autocast) keeps none, so its rollout is
# the KV cache and the prefill, and its scoring and update run the bf16-logits and bf16-activation paths. The tiny
# model is all logits (V = 49,152, H = 64); SmolLM2's activations and KV cache weigh more.
# gpu_24gb runs its own 4-bit path on the CPU (hardware.device=cpu, which every profile here gets): NF4 weights,
# bf16 compute, paged 8-bit AdamW, an fp32 residual stream and fp32 K and V (rlhf/plan/memory.py Precision.of).
PPO_SHAPES = {
    "tiny_llama": {
        "cpu": [(8, 32, 4), (16, 64, 8), (32, 64, 16)],
        "cpu_bf16": [(32, 64, 8)],
        "gpu_24gb": [(8, 32, 4), (16, 64, 8), (32, 64, 16)],
    },
    "smollm2_135m": {
        "cpu": [(4, 32, 2), (8, 48, 4), (16, 64, 8)],
        "cpu_bf16": [(16, 64, 4), (32, 96, 8)],
        "gpu_24gb": [(4, 32, 2), (8, 48, 4), (16, 64, 8)],
    },
}
# (algo, micro batch, max_length); the synthetic pairs are < 200 tokens
TRAINER_SHAPES = {
    "tiny_llama": [("rm", 4, 256), ("sft", 8, 256), ("dpo", 4, 256), ("dpo", 8, 128)],
    "smollm2_135m": [("rm", 4, 256), ("sft", 4, 256), ("dpo", 2, 256), ("dpo", 4, 128)],
}
TARGET = 0.25
DEBUG = False  # |predicted / measured - 1| the planner aims to stay within


# --------------------------------------------------------------------------- measuring


def live_tensor_bytes() -> int:
    """Bytes of every tensor Python can reach, each storage once (views and shared weights are one storage)."""
    import torch

    gc.collect()
    storages = {}
    with warnings.catch_warnings():  # isinstance on every object touches deprecated module attributes
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            if isinstance(obj, torch.Tensor) and not obj.is_meta:
                storage = obj.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def measured_peak(fn):
    """(the result of ``fn``, (live bytes at the start + the peak of what ``fn`` allocates and has not freed,
    that peak alone))."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    start = live_tensor_bytes()
    if DEBUG:
        print(f"  live at start {start / 2**20:.1f} MiB", flush=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    current = peak = 0
    for event in prof.profiler.kineto_results.events():
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU:
            current += event.nbytes()
            peak = max(peak, current)
    if DEBUG:
        print(f"  allocated peak {peak / 2**20:.1f} MiB", flush=True)
    return result, (start + peak, peak)


def row(model: str, phase: str, shape: str, predicted, measured: tuple[float, float], peak_of: str) -> dict:
    """``predicted`` a Phase; ``measured`` (peak, what the phase added to the tensors alive at its start)."""
    added = predicted.peak - sum(predicted.resident.values())
    return {
        "model": model,
        "phase": phase,
        "shape": shape,
        "predicted_mib": round(predicted.peak / 2**20, 1),
        "measured_mib": round(measured[0] / 2**20, 1),
        "ratio": round(predicted.peak / measured[0], 3),
        "predicted_added_mib": round(added / 2**20, 1),
        "measured_added_mib": round(measured[1] / 2**20, 1),
        "added_ratio": round(added / measured[1], 3),
        "largest": peak_of,
    }


def _largest(phase) -> str:
    name, size = max(phase.components.items(), key=lambda item: item[1])
    return f"{name} {size / 2**20:.0f} MiB"


# --------------------------------------------------------------------------- PPO


def _fresh_reward_adapter(job, out: Path) -> Path:
    """A reward model's adapter/ as an rm run saves it (LoRA + score head), untrained: its values do not
    change the memory of a phase."""
    from rlhf.modeling.models import add_adapter, load_reward_backbone

    model = add_adapter(load_reward_backbone(job.model_path, job.model, job.hardware, job.tokenizer), job.lora,
                        "SEQ_CLS", modules_to_save=["score"])  # fmt: skip
    model.save_pretrained(out, safe_serialization=True)
    del model
    gc.collect()
    return out


def ppo_rows(model_name: str, hardware: str, shapes: list[tuple[int, int, int]], work: Path) -> list[dict]:
    import torch
    from transformers import get_scheduler

    from rlhf.algos.ppo.loop import ppo_update
    from rlhf.algos.ppo.math import compute_gae, masked_whiten, per_token_rewards
    from rlhf.algos.ppo.optimizer import build_optimizer
    from rlhf.algos.ppo.roles import build_roles
    from rlhf.algos.ppo.scoring import score_rollout
    from rlhf.algos.ppo.settings import Settings
    from rlhf.config import from_node
    from rlhf.modeling.generation import sample
    from rlhf.modeling.held_out import evaluate
    from rlhf.plan import memory, phases
    from rlhf.plan.fits import plan
    from rlhf.run.job import build_job

    cfg = common.compose(
        [f"model={model_name}", "algo=ppo", "logger=none", f"hardware={hardware}", "hardware.device=cpu", "lora=r16"]
    )
    job = build_job(cfg, work / f"ppo-{model_name}-{hardware}", job_type="ppo", group="plan_check", tags=[])
    rm = SimpleNamespace(adapter=_fresh_reward_adapter(job, work / f"rm-{model_name}"), model=job.model)
    roles = build_roles(job, rm, share_base=True, init_adapter=None, value_model="adapter")
    base = plan(cfg)
    prompts = [ex["prompt"] for ex in job.data.train]
    rows = []
    for chunk, new_tokens, micro in shapes:
        torch.manual_seed(0)
        settings = from_node(Settings, cfg.algo, "algo")
        sampling = dataclasses.replace(settings.sampling, max_new_tokens=new_tokens)
        settings = dataclasses.replace(settings, batch_size=chunk, rollout_chunk_size=chunk, num_mini_batches=1,
                                       ppo_epochs=1, sampling=sampling)  # fmt: skip
        batch = prompts[:chunk]
        optimizer = build_optimizer(roles.trainable.values(), job.hardware.optim, 1e-6, 1e-5, roles.device)
        for p in roles.trainable.values():  # the state an earlier update leaves: moments, and gradients
            p.grad = torch.zeros_like(p)
        optimizer.step()
        scheduler = get_scheduler("constant", optimizer)
        keep = roles.generation_matches_scoring
        rollout, rollout_peak = measured_peak(
            partial(sample, roles, batch, settings.sampling, chunk_size=chunk, with_logprobs=keep)
        )
        old, score_peak = measured_peak(
            partial(score_rollout, roles, rollout, settings.sampling.temperature, chunk, 256)
        )
        rewards, _ = per_token_rewards(old.scores, old.logprobs, old.ref_logprobs, rollout.mask, 0.05, "k1")
        advantages, returns = compute_gae(rewards, old.values, rollout.mask, 1.0, 0.95)
        advantages = masked_whiten(advantages, rollout.mask)
        update = partial(ppo_update, roles, optimizer, scheduler, rollout, old, advantages, returns, settings, micro)
        update_peak = measured_peak(update)[1]
        del old, rewards, advantages, returns, update
        eval_peak = measured_peak(partial(evaluate, roles, batch, settings.sampling, False, chunk, 256, 0, False))[1]
        prompt_len, new = rollout.prompt_ids.shape[1], rollout.responses.shape[1]
        workload = phases.PpoWorkload(batch_size=chunk, chunk=chunk, eval_prompts=chunk, prompt_len=prompt_len,
                                      new_tokens=new, micro_batch=micro, share_base=True, value_model="adapter",
                                      init_adapter=False)  # fmt: skip
        predicted = {p.name: p for p in phases.ppo_phases(base.arch, memory.Precision.of(job.hardware), job.lora,
                                                          workload)}  # fmt: skip
        shape = f"{hardware}: chunk {chunk}, {prompt_len}+{new} tokens, micro {micro}"
        for name, measured in (("rollout", rollout_peak), ("scoring", score_peak), ("update", update_peak),
                               ("evaluation", eval_peak)):  # fmt: skip
            rows.append(row(model_name, f"ppo {name}", shape, predicted[name], measured, _largest(predicted[name])))
            print(_line(rows[-1]), flush=True)
        del rollout, optimizer, scheduler
        for p in roles.trainable.values():
            p.grad = None
        gc.collect()
    del roles
    gc.collect()
    return rows


# --------------------------------------------------------------------------- rm, sft, dpo


def _record_shape(seen: list, _module, args, kwargs) -> None:
    ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]
    seen.append(tuple(ids.shape))


def trainer_rows(model_name: str, shapes: list[tuple[str, int, int]], work: Path) -> list[dict]:
    import importlib

    from rlhf.config import from_node
    from rlhf.plan import memory, phases
    from rlhf.plan.fits import plan
    from rlhf.run.job import build_job

    rows = []
    for index, (algo, micro, max_length) in enumerate(shapes):
        cfg = common.compose(
            [
                f"model={model_name}",
                f"algo={algo}",
                "logger=none",
                "hardware=cpu",
                "lora=r16",
                f"hardware.micro_batch_size={micro}",
                f"algo.batch_size={micro}",
                "algo.max_steps=2",
                f"algo.max_length={max_length}",
                "dataset.n_train=64",
            ]  # fmt: skip
            + ([f"algo.max_prompt_length={max_length // 2}"] if algo != "rm" else [])
        )
        module = importlib.import_module(f"rlhf.algos.{algo}")
        settings = from_node(module.Settings, cfg.algo, "algo")
        job = build_job(cfg, work / f"{algo}-{model_name}-{index}", job_type=algo, group="plan_check", tags=[])
        if algo == "dpo":
            built = (module.build(job, settings),)
        else:
            built = module.build(job)
        model = built[-1].model if algo == "dpo" else built[-1]
        seen = []  # (rows, tokens) of every forward of the decoder
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model.get_decoder()
        hook = decoder.register_forward_pre_hook(partial(_record_shape, seen), with_kwargs=True)
        # [1]: dpo's fit returns its trainer, which must not outlive this row
        measured = measured_peak(partial(module.fit, job, settings, *built))[1]
        hook.remove()
        rows_seen, length = max(r for r, _ in seen), max(t for _, t in seen)
        workload = phases.TrainerWorkload(algo=algo, micro_batch=micro, max_length=length, eval_batch_size=micro,
                                          dropout=algo == "sft")  # fmt: skip
        base = plan(cfg)
        step = phases.trainer_phases(base.arch, memory.Precision.of(job.hardware), job.lora, workload)[0]
        rows.append(row(model_name, f"{algo} train step", f"{rows_seen} rows x {length} tokens", step, measured,
                        _largest(step)))  # fmt: skip
        print(_line(rows[-1]), flush=True)
        job.tracker.finish(exit_code=0)
        del built, model, decoder
        gc.collect()
    return rows


# --------------------------------------------------------------------------- the Llama-2-7B presets


def preset_rows() -> list[list]:
    """The planner's verdict on every conf/experiment preset on both GPU profiles, PPO also with a model per role
    (no model is loaded: the architecture comes from rlhf.plan.architecture.KNOWN)."""
    from rlhf.plan.fits import plan, verdict

    rows = []
    for preset in [f"llama2_7b_hh_{algo}" for algo in ("rm", "sft", "dpo", "ppo", "grpo", "rloo")]:
        layouts = [[], ["algo.share_base=false"]] if preset.endswith("_ppo") else [[]]
        for hardware in ("gpu_24gb", "a100_80gb"):
            for extra in layouts:
                result = plan(common.compose([f"experiment={preset}", f"hardware={hardware}", *extra]))
                peaks = ", ".join(f"{p.name} {p.peak / 2**30:.1f}" for p in result.phases)
                line = verdict(result)
                chunk, micro = result.largest_chunk(), result.largest_micro_batch()
                rows.append([preset + (" (a model per role)" if extra else ""), hardware, peaks,
                             "fits" if line is None else f"does not fit: {line}",
                             "-" if chunk is None else chunk, micro])  # fmt: skip
    return rows


# --------------------------------------------------------------------------- report


def _line(r: dict) -> str:
    return (f"{r['model']:<13} {r['phase']:<17} {r['shape']:<44} predicted {r['predicted_mib']:8.1f} MiB  "
            f"measured {r['measured_mib']:8.1f} MiB  ratio {r['ratio']:.2f}  added by the phase "
            f"{r['predicted_added_mib']:.1f} / {r['measured_added_mib']:.1f} MiB = {r['added_ratio']:.2f}")  # fmt: skip


def markdown(rows: list[dict]) -> str:
    headers = ["model", "phase", "shape", "predicted MiB", "measured MiB", "predicted / measured",
               "added by the phase: predicted / measured MiB", "ratio", "largest predicted part"]  # fmt: skip
    body = [[r["model"], r["phase"], r["shape"], r["predicted_mib"], r["measured_mib"], f"{r['ratio']:.2f}",
             f"{r['predicted_added_mib']} / {r['measured_added_mib']}", f"{r['added_ratio']:.2f}", r["largest"]]
            for r in rows]  # fmt: skip
    return common.table(headers, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny_llama,smollm2_135m")
    parser.add_argument("--quick", action="store_true", help="one PPO shape and one trainer step per model")
    parser.add_argument("--hardware", default="cpu,cpu_bf16", help="the hardware profiles of the PPO shapes")
    parser.add_argument("--only", choices=("ppo", "trainers"), help="measure only PPO's phases or the trainer steps")
    parser.add_argument("--debug", action="store_true", help="print each phase's live and allocated bytes")
    parser.add_argument("--section", default="plan_check", help="the section of the results file to write")
    parser.add_argument("--presets", action="store_true", help="only the planner's verdicts on the Llama-2-7B presets")
    args = parser.parse_args()
    global DEBUG
    DEBUG = args.debug
    if args.presets:
        headers = ["preset", "hardware", "predicted peak GiB by phase", "verdict", "largest chunk", "largest micro"]
        print(common.table(headers, preset_rows()))
        return
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="plan_check-") as tmp:
        for model in args.models.split(","):
            ppo = {hw: PPO_SHAPES[model][hw] for hw in args.hardware.split(",")}
            trainers = TRAINER_SHAPES[model]
            if args.quick:
                ppo, trainers = {"cpu": ppo["cpu"][:1]}, trainers[-1:]
            if args.only != "trainers":
                for hardware, shapes in ppo.items():
                    rows += ppo_rows(model, hardware, shapes, Path(tmp))
            if args.only != "ppo":
                rows += trainer_rows(model, trainers, Path(tmp))
    worst = max(abs(r["ratio"] - 1) for r in rows)
    worst_added = max(abs(r["added_ratio"] - 1) for r in rows)
    print("\n" + markdown(rows))
    print(f"\nworst |predicted / measured - 1| = {worst:.2f} of the peak (target <= {TARGET}), {worst_added:.2f} of "
          f"what the phases add to the tensors alive before them; {time.perf_counter() - started:.0f} s")  # fmt: skip
    common.save_results(args.section, {"rows": rows, "worst_error": worst, "worst_added_error": worst_added,
                                       "target": TARGET})  # fmt: skip


if __name__ == "__main__":
    main()
