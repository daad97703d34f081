"""Will this config fit? The plan of a composed config, the largest chunk and micro batch that fit, and
:func:`check_fits`, the one-line answer train.py can ask before any weights load."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from omegaconf import DictConfig

from rlhf.config import HardwareSettings, LoraSettings, ModelSettings, from_node
from rlhf.errors import ConfigError
from rlhf.plan import memory as m
from rlhf.plan.architecture import Architecture, UnknownArchitecture, architecture
from rlhf.plan.phases import (
    GENERATION_MOMENTS,
    OnlineWorkload,
    Phase,
    PpoWorkload,
    TrainerWorkload,
    online_phases,
    ppo_phases,
    trainer_phases,
)

log = logging.getLogger(__name__)

# What the process holds on the device besides tensors (the CUDA context and cuBLAS workspaces, or Python and its
# libraries in RAM) and the caching allocator's slack: the predicted peak must fit in memory_gib minus this.
RESERVE_GIB = 1.0
ONLINE = ("grpo", "rloo")  # TRL's GRPOTrainer / RLOOTrainer (rlhf/algos/online_trl.py)
PLANNED = ("rm", "judge", "sft", "dpo", "ppo", *ONLINE)  # the algorithms with a memory model (rlhf/plan/phases.py)
CHUNK_PHASES = ("rollout", "scoring", "evaluation")  # PPO's phases that algo.rollout_chunk_size shrinks
ROLLOUT_PHASES = ("rollout", "evaluation")  # grpo's and rloo's phases that generate algo.batch_size at once
ROLLOUT_SEARCH = 16  # the report looks for a larger algo.batch_size up to this many times the config's


@dataclass(frozen=True)
class Knob:
    """A config key that shrinks a phase's peak: its workload field and the values it may take."""

    key: str
    field: str
    candidates: list[int]
    bound: str = "<="  # how a fitting value is named: "=" where only some smaller values are valid


@dataclass(frozen=True)
class Plan:
    """A config's predicted peaks, phase by phase, and what shrinks them."""

    algo: str
    model: str
    arch: Architecture
    hardware: HardwareSettings
    lora: LoraSettings
    precision: m.Precision
    workload: PpoWorkload | TrainerWorkload | OnlineWorkload
    phases: list[Phase]
    batch_size: int  # algo.batch_size: the micro batch must divide it (PPO, grpo, rloo: the minibatch)

    @property
    def usable_bytes(self) -> float | None:
        if self.hardware.memory_gib is None:
            return None
        return (self.hardware.memory_gib - RESERVE_GIB) * m.GIB

    def fits(self, phase: Phase) -> bool:
        return self.usable_bytes is None or phase.peak <= self.usable_bytes

    def with_workload(self, **changes) -> Plan:
        workload = replace(self.workload, **changes)
        return replace(self, workload=workload, phases=_phases(self.arch, self.precision, self.lora, workload))

    def largest(self, knob: Knob, phase: str) -> int | None:
        """The largest value of ``knob`` at which ``phase`` fits, or None."""
        for value in sorted(knob.candidates, reverse=True):
            trial = self.with_workload(**{knob.field: value})
            if trial.fits(next(p for p in trial.phases if p.name == phase)):
                return value
        return None

    def knob(self, phase: Phase) -> Knob:
        """What shrinks ``phase``'s peak: PPO's rollout chunk (generation and scoring), grpo's and rloo's rollout
        size where a generate call peaks, the eval batch for rm/sft/dpo's evaluation, else the micro batch (a
        divisor of the batch it splits, as accumulation needs)."""
        w = self.workload
        if isinstance(w, PpoWorkload) and phase.name in CHUNK_PHASES:
            return Knob("algo.rollout_chunk_size", "chunk", list(range(1, w.batch_size + 1)))
        if isinstance(w, OnlineWorkload) and phase.peak_moment in GENERATION_MOMENTS:
            return _rollout_size_knob(w, w.batch_size)
        if isinstance(w, TrainerWorkload) and phase.name == "evaluation":
            return Knob("algo.eval_batch_size", "eval_batch_size", list(range(1, w.eval_batch_size + 1)))
        return self._micro_batch_knob()

    def _micro_batch_knob(self) -> Knob:
        divisors = [d for d in range(1, self.batch_size + 1) if self.batch_size % d == 0]
        return Knob("hardware.micro_batch_size", "micro_batch", divisors, bound="=")

    def _largest_everywhere(self, knob: Knob, phases: tuple[str, ...]) -> int | None:
        """The largest value of ``knob`` at which all of ``phases`` fit, or None."""
        fitting = [self.largest(knob, name) for name in phases]
        return None if None in fitting else min(fitting)

    def largest_chunk(self) -> int | None:
        """The largest algo.rollout_chunk_size at which rollout, scoring and evaluation fit (PPO), or None."""
        if not isinstance(self.workload, PpoWorkload):
            return None
        knob = Knob("algo.rollout_chunk_size", "chunk", list(range(1, self.workload.batch_size + 1)))
        return self._largest_everywhere(knob, CHUNK_PHASES)

    def largest_rollout(self) -> int | None:
        """The largest algo.batch_size, up to ROLLOUT_SEARCH times the config's, whose one generate call fits in
        the rollout and the evaluation (grpo, rloo), or None."""
        w = self.workload
        if not isinstance(w, OnlineWorkload):
            return None
        return self._largest_everywhere(_rollout_size_knob(w, ROLLOUT_SEARCH * w.batch_size), ROLLOUT_PHASES)

    def largest_micro_batch(self) -> int | None:
        """The largest hardware.micro_batch_size at which the update (PPO; grpo and rloo: and their scoring
        forwards) or the train step fits, or None."""
        if isinstance(self.workload, TrainerWorkload):
            phases = ("train step",)
        else:
            phases = ("scoring", "update") if isinstance(self.workload, OnlineWorkload) else ("update",)
        return self._largest_everywhere(self._micro_batch_knob(), phases)


def _rollout_size_knob(w: OnlineWorkload, up_to: int) -> Knob:
    """algo.batch_size, over the sizes up to ``up_to`` that online_trl.Settings accepts: whole groups of
    num_generations, split into num_mini_batches minibatches, each a whole number of micro batches."""
    sizes = []
    for size in range(w.num_generations, up_to + 1, w.num_generations):
        minibatch = size // w.num_mini_batches
        if size % w.num_mini_batches == 0 and minibatch % min(w.micro_batch, minibatch) == 0:
            sizes.append(size)
    return Knob("algo.batch_size", "batch_size", sizes, bound="=")


def _phases(arch, precision, lora, workload) -> list[Phase]:
    if isinstance(workload, PpoWorkload):
        return ppo_phases(arch, precision, lora, workload)
    if isinstance(workload, OnlineWorkload):
        return online_phases(arch, precision, lora, workload)
    return trainer_phases(arch, precision, lora, workload)


def _online_workload(algo: DictConfig, hardware: HardwareSettings) -> OnlineWorkload:
    """grpo and rloo as online_trl.training_args sets up TRL: one generation batch of algo.batch_size
    completions, num_mini_batches optimizer steps of it per pass, num_iterations passes."""
    one_step_per_rollout = algo.num_mini_batches == 1 and algo.num_iterations == 1
    return OnlineWorkload(
        algo=algo.name,
        batch_size=algo.batch_size,
        num_generations=algo.num_generations,
        num_mini_batches=algo.num_mini_batches,
        eval_prompts=algo.eval_prompts,
        prompt_len=algo.sampling.max_prompt_length,
        new_tokens=algo.sampling.max_new_tokens,
        micro_batch=hardware.micro_batch_size,
        init_adapter=algo.init_adapter is not None,
        reference_forward=algo.beta > 0,
        # RLOO's sequence ratio and KL penalty always need them; GRPO's only when the policy moves between the
        # rollout and its last step (its gradient_accumulation_steps % (steps_per_generation x num_iterations))
        old_policy_forward=algo.name == "rloo" or not one_step_per_rollout,
    )


def _workload(
    cfg: DictConfig, hardware: HardwareSettings, lora: LoraSettings
) -> tuple[PpoWorkload | TrainerWorkload | OnlineWorkload, int]:
    """(the workload, the batch the micro batch splits) from the raw algo node: the planner sits below the
    algorithms (rlhf/__init__.py), so it reads their keys rather than their Settings."""
    algo = cfg.algo
    if algo.name == "ppo":
        minibatch = algo.batch_size // algo.num_mini_batches
        # algo.rollout_chunk_size is new; a config without it generates the whole batch at once
        chunk = algo.get("rollout_chunk_size") or algo.batch_size
        return PpoWorkload(
            batch_size=algo.batch_size,
            chunk=min(chunk, algo.batch_size),
            eval_prompts=algo.eval_prompts,
            prompt_len=algo.sampling.max_prompt_length,
            new_tokens=algo.sampling.max_new_tokens,
            micro_batch=min(hardware.micro_batch_size, minibatch),
            share_base=algo.share_base,
            value_model=algo.value_model,
            init_adapter=algo.init_adapter is not None,
        ), minibatch
    if algo.name in ONLINE:
        return _online_workload(algo, hardware), algo.batch_size // algo.num_mini_batches
    if algo.name not in PLANNED:
        raise ConfigError(
            f"the planner has no memory model for algo={algo.name} yet: it knows {', '.join(sorted(PLANNED))}"
        )
    return TrainerWorkload(
        algo="rm" if algo.name == "judge" else algo.name,  # algo=judge is a reward model on other pairs
        micro_batch=min(hardware.micro_batch_size, algo.batch_size),
        max_length=algo.max_length,
        eval_batch_size=algo.eval_batch_size,
        # TRL's RewardTrainer and DPOTrainer set every dropout to 0 (their disable_dropout=True); SFTTrainer does not
        dropout=bool(algo.name == "sft" and lora.enabled and lora.dropout),
        init_adapter=algo.get("init_adapter") is not None,
        precompute_ref=bool(algo.get("precompute_ref_log_probs", False)),
    ), algo.batch_size


def plan(cfg: DictConfig) -> Plan:
    """The plan of a composed train config (conf/train.yaml), from the model's config alone."""
    model = from_node(ModelSettings, cfg.model, "model")
    hardware = from_node(HardwareSettings, cfg.hardware, "hardware")
    lora = from_node(LoraSettings, cfg.lora, "lora")
    arch = architecture(model)
    precision = m.Precision.of(hardware)
    workload, batch = _workload(cfg, hardware, lora)
    return Plan(cfg.algo.name, model.name, arch, hardware, lora, precision, workload,
                _phases(arch, precision, lora, workload), batch)  # fmt: skip


def _gib(value: float) -> str:
    """GiB, or MiB below one GiB."""
    return f"{value / m.GIB:.1f} GiB" if value >= m.GIB else f"{value / 2**20:.0f} MiB"


def verdict(plan: Plan) -> str | None:
    """None when every phase fits (or hardware.memory_gib is null), else one line: the knob, what it needs, and a
    value that fits."""
    if plan.usable_bytes is None:
        return None
    failing = [p for p in plan.phases if not plan.fits(p)]
    if not failing:
        return None
    hw = f"hardware={plan.hardware.name} ({plan.hardware.memory_gib:g} GiB)"
    phase = failing[0]
    resident = sum(phase.resident.values())
    if resident > plan.usable_bytes:
        if isinstance(plan.workload, PpoWorkload) and not plan.workload.share_base:
            shared = plan.with_workload(share_base=True)
            if sum(shared.phases[0].resident.values()) <= plan.usable_bytes:
                return (f"algo.share_base=false needs {_gib(resident)} for a model per role on {hw}: "
                        "set algo.share_base=true (one base serves all four roles)")  # fmt: skip
        fix = "hardware.load_in_4bit=true" if not plan.hardware.load_in_4bit else "a larger hardware profile"
        return f"model={plan.model} needs {_gib(resident)} for weights and optimizer state on {hw}: use {fix}"
    knob = plan.knob(phase)
    value = getattr(plan.workload, knob.field)
    what, size = phase.largest_transient
    fit = plan.largest(knob, phase.name)
    if fit is not None:
        return (f"{knob.key}={value} needs {_gib(size)} of {what} on {hw}; {_gib(phase.peak)} in all at the "
                f"{phase.name} peak: set {knob.key}{knob.bound}{fit}")  # fmt: skip
    if not plan.hardware.gradient_checkpointing and phase.name in ("update", "train step"):
        return (f"the {phase.name} needs {_gib(phase.peak)} on {hw} even at {knob.key}=1: "
                "set hardware.gradient_checkpointing=true")  # fmt: skip
    sampled = isinstance(plan.workload, (PpoWorkload, OnlineWorkload))
    length = "algo.sampling.max_new_tokens" if sampled else "algo.max_length"
    return (f"the {phase.name} needs {_gib(phase.peak)} on {hw} ({_gib(size)} of {what}) even at {knob.key}=1: "
            f"lower {length}")  # fmt: skip


def check_fits(cfg: DictConfig) -> None:
    """Raise ConfigError (one line: the knob and a value that fits) when the config's predicted peak exceeds
    hardware.memory_gib; nothing when it fits, when the profile sets no memory size (hardware=cpu), for an
    algorithm the planner has no memory model of (not in PLANNED), or (with a warning) when the model's
    architecture is not known on this machine."""
    if cfg.hardware.get("memory_gib") is None or cfg.algo.name not in PLANNED:
        return  # no limit to check, and no need to read the model's config
    try:
        result = plan(cfg)
    except UnknownArchitecture as err:
        # e.g. a hub model whose config.json the first load downloads: no reason to stop the run
        log.warning("memory not checked: %s", err)
        return
    line = verdict(result)
    if line is not None:
        raise ConfigError(line)
