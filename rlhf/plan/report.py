"""The plan as text: per phase the predicted peak and what it is made of, the verdict, what would fit."""

from __future__ import annotations

from rlhf.plan.architecture import describe
from rlhf.plan.fits import RESERVE_GIB, Plan, verdict
from rlhf.plan.memory import GIB
from rlhf.plan.phases import OnlineWorkload, PpoWorkload


def _size(value: float) -> str:
    """GiB, or MiB below one GiB (the tiny model's phases)."""
    return f"{value / GIB:8.2f} GiB" if value >= GIB else f"{value / 2**20:8.1f} MiB"


def _shapes(plan: Plan) -> str:
    w = plan.workload
    if isinstance(w, PpoWorkload):
        layout = "shared base" if w.share_base else "a model per role"
        return (f"{w.batch_size} prompts, chunks of {w.chunk} (rollout, scoring), prompt <= {w.prompt_len} + "
                f"{w.new_tokens} new tokens, update micro batch {w.micro_batch}, {layout}, "
                f"value_model={w.value_model}")  # fmt: skip
    if isinstance(w, OnlineWorkload):
        forwards = [name for name, runs in (("old policy", w.old_policy_forward), ("reference", w.reference_forward))
                    if runs]  # fmt: skip
        return (f"{w.batch_size} completions a rollout ({w.batch_size // w.num_generations} prompts x "
                f"{w.num_generations}) in one generate call, prompt <= {w.prompt_len} + {w.new_tokens} new tokens, "
                f"micro batch {w.rows}, log-prob forwards: {' and '.join(forwards) or 'none'}")  # fmt: skip
    rows = "pairs" if w.algo in ("rm", "dpo") else "examples"
    return f"micro batch {w.micro_batch} {rows} x {w.max_length} tokens, eval batch {w.eval_batch_size}"


def render(plan: Plan) -> str:
    hw = plan.hardware
    p = plan.precision
    memory = "no limit set (hardware.memory_gib=null)" if hw.memory_gib is None else f"{hw.memory_gib:g} GiB"
    weights = "4-bit NF4" if p.load_in_4bit else f"{8 * p.weight}-bit"
    lines = [
        f"plan: algo={plan.algo} model={plan.model} lora={plan.lora.name} hardware={hw.name} ({memory})",
        f"  model: {describe(plan.arch)}",
        f"  precision: {weights} weights, {8 * p.act}-bit activations, gradient checkpointing "
        f"{'on' if p.checkpointing else 'off'}, optim={p.optim}",
        f"  shapes: {_shapes(plan)}",
        "",
    ]
    for phase in plan.phases:
        status = "" if hw.memory_gib is None else ("  fits" if plan.fits(phase) else "  DOES NOT FIT")
        lines.append(f"  {phase.name:<12}{_size(phase.peak)}  (peak: {phase.peak_moment}){status}")
        for name, size in phase.components.items():
            if size:
                lines.append(f"      {name:<44}{_size(size)}")
    lines.append("")
    if hw.memory_gib is not None:
        usable = hw.memory_gib - RESERVE_GIB
        chunk, micro = plan.largest_chunk(), plan.largest_micro_batch()
        fits = [f"usable {usable:g} GiB ({RESERVE_GIB:g} GiB kept for the CUDA context and allocator slack)"]
        if isinstance(plan.workload, PpoWorkload):
            fits.append(f"largest algo.rollout_chunk_size that fits: {chunk if chunk is not None else 'none'}")
        if isinstance(plan.workload, OnlineWorkload):
            rollout = plan.largest_rollout()
            fits.append(f"largest algo.batch_size that fits (one generate call): {rollout or 'none'}")
        fits.append(f"largest hardware.micro_batch_size that fits: {micro if micro is not None else 'none'}")
        lines += [f"  {line}" for line in fits]
        line = verdict(plan)
        lines.append(f"verdict: {'fits' if line is None else 'does not fit: ' + line}")
    return "\n".join(lines)
