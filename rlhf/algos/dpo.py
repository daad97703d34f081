"""Direct Preference Optimization: TRL's DPOTrainer on a LoRA policy, the reference inside the same weights.

loss (sigmoid) = -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))]).

Where the reference comes from (one copy of the base weights unless noted):
- LoRA, no init adapter: a fresh adapter; the reference is the base with the adapter disabled.
- LoRA, ``algo.init_adapter`` (e.g. an SFT run): that adapter is trained further as "default" and TRL
  keeps a frozen copy named "ref" on the same base; the reference is the SFT model (DPO paper).
- ``lora=none`` (full fine-tuning): the reference is a second full copy of the start model (base, or
  base + init adapter merged), loaded here; with ``precompute_ref_log_probs`` no copy is kept, since
  TRL scores the data with the start model before the first step.

Held-out metrics: implicit rewards beta * (log pi(y|x) - log pi_ref(y|x)) of the test split's chosen and
rejected responses; ``eval_accuracy`` is the share of pairs with chosen > rejected (ties half),
``eval_margin`` the mean difference, and ``eval_accuracy/<family>`` per family. The reference log-probs are
taken before training, on the device training runs on (hf_trainer/placement.py).

Each checkpoint records the init adapter (its path and weights' sha256); a resumed run whose
``algo.init_adapter`` now gives other weights (e.g. outputs/latest/sft moved on to a newer run) stops with one
error naming the adapter it started from.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftConfig
from trl import DPOConfig, DPOTrainer

from rlhf.algos.hf_trainer.checkpoints import record_init_adapter, start_adapter
from rlhf.algos.hf_trainer.columns import job_pairs, preference_dataset
from rlhf.algos.hf_trainer.length_grouping import group_by_length
from rlhf.algos.hf_trainer.loop import last_checkpoint, run_trainer
from rlhf.algos.hf_trainer.placement import on_training_device
from rlhf.algos.hf_trainer.settings import TrainerSettings, common_training_args
from rlhf.config import check, check_choice, check_init_adapter_value
from rlhf.errors import ConfigError
from rlhf.modeling.logprobs import preference_logprobs, truncate_prompt
from rlhf.modeling.models import load_adapter, load_causal_lm, lora_config, merge_adapter
from rlhf.modeling.reward_scoring import pair_metrics
from rlhf.run import costs
from rlhf.run.job import Job
from rlhf.run.tracking import TrackerCallback

__all__ = ["Settings", "LOSS_TYPES", "Policy", "build", "make_trainer", "fit", "train", "implicit_rewards"]

log = logging.getLogger(__name__)

# TRL 1.16 DPOConfig.loss_type names (trl/trainer/dpo_config.py); each runs one step in tests/algos/test_dpo.py.
LOSS_TYPES = (
    "sigmoid",  # DPO
    "hinge",  # SLiC
    "ipo",  # IPO (length-normalised; beta is tau)
    "exo_pair",  # EXO (needs label_smoothing > 0, paper: 1e-3)
    "nca_pair",  # NCA
    "robust",  # Robust DPO (label_smoothing = flip probability)
    "bco_pair",  # BCO
    "sppo_hard",  # SPPO, hard labels
    "aot",  # AOT (paired)
    "aot_unpaired",  # AOT (unpaired)
    "apo_zero",  # APO-zero
    "apo_down",  # APO-down
    "discopop",  # DiscoPOP
    "sft",  # NLL of the chosen response only
    "sigmoid_norm",  # DPO on length-normalised log-ratios
)
# The loss types that read label_smoothing in TRL 1.16 (its sigmoid loss no longer does: no cDPO).
SMOOTHED_LOSS_TYPES = ("robust", "exo_pair", "aot", "aot_unpaired")


@dataclass(frozen=True)
class Settings(TrainerSettings):
    """conf/algo/dpo.yaml: the shared trainer fields (TrainerSettings) and these."""

    beta: float
    loss_type: str
    label_smoothing: float
    max_prompt_length: int
    precompute_ref_log_probs: bool
    init_adapter: str | None

    def __post_init__(self):
        check(
            self.beta > 0,
            "algo.beta",
            self.beta,
            "must be > 0 (e.g. 0.1); it scales the implicit reward beta * log(pi / pi_ref)",
        )
        check_choice("algo.loss_type", self.loss_type, LOSS_TYPES)
        check(0 <= self.label_smoothing < 0.5, "algo.label_smoothing", self.label_smoothing, "must be in [0, 0.5)")
        if self.label_smoothing > 0 and self.loss_type not in SMOOTHED_LOSS_TYPES:
            raise ConfigError(
                f"algo.label_smoothing={self.label_smoothing} has no effect "
                f"with algo.loss_type={self.loss_type} in TRL 1.16: "
                f"set it to 0, or use a loss that reads it ({', '.join(SMOOTHED_LOSS_TYPES)})"
            )
        if self.loss_type == "exo_pair":
            check(
                self.label_smoothing > 0,
                "algo.label_smoothing",
                self.label_smoothing,
                "exo_pair needs > 0 (the EXO paper uses 1e-3)",
            )
        super().__post_init__()
        check_init_adapter_value(self.init_adapter)


@dataclass
class Policy:
    """What DPOTrainer gets. ``model`` is a plain causal LM (wrapped by TRL with ``peft_config``), a PeftModel
    holding the init adapter, or the full model to fine-tune; ``ref_model`` is set only for full fine-tuning."""

    tokenizer: object
    model: torch.nn.Module
    peft_config: PeftConfig | None
    ref_model: torch.nn.Module | None
    reference: str  # how the reference is formed, for the summary
    init_adapter: Path | None = None


def _start_model(job: Job, path: str, tokenizer, adapter: Path | None):
    """The start policy with the init adapter merged in (full fine-tuning)."""
    lm = load_causal_lm(path, job.model, job.hardware, tokenizer)
    return lm if adapter is None else merge_adapter(lm, adapter)


@costs.phase("load_model")
def build(job: Job, settings: Settings) -> Policy:
    """Tokenizer, start policy and reference arrangement for this job (see the module docstring). A resume
    first checks that the init adapter is the one the run started from (before any weights load)."""
    adapter = start_adapter(job, settings.init_adapter, last_checkpoint(job.run_dir) if job.resume else None)
    path, tokenizer = job.model_path, job.tokenizer
    if job.lora.enabled:
        backbone = load_causal_lm(path, job.model, job.hardware, tokenizer)
        if adapter is None:
            return Policy(tokenizer, backbone, lora_config(job.lora, "CAUSAL_LM"), None, "base, adapter disabled")
        saved = LoraConfig.from_pretrained(str(adapter))
        log.info(
            "continuing the init adapter %s (r=%s, %s); the lora=%s group is not used",
            adapter,
            saved.r,
            sorted(saved.target_modules),
            job.lora.name,
        )
        # TRL adds a frozen copy of this adapter named "ref" on the same base: the reference is the init model.
        return Policy(
            tokenizer,
            load_adapter(backbone, adapter, trainable=True),
            None,
            None,
            "init adapter, frozen 'ref' copy",
            adapter,
        )
    policy = _start_model(job, path, tokenizer, adapter)
    start = "base + init adapter" if adapter is not None else "base"
    if settings.precompute_ref_log_probs:
        return Policy(tokenizer, policy, None, None, f"{start}, log-probs precomputed before training", adapter)
    log.info("lora=none: loading a second full copy of the start model as the DPO reference")
    ref = _start_model(job, path, tokenizer, adapter)
    ref.eval().requires_grad_(False)
    return Policy(tokenizer, policy, None, ref, f"{start}, separate full copy", adapter)


def training_dataset(tokenizer, examples: list[dict], max_prompt_length: int):
    """TRL's conversational preference columns, prompts cut to ``max_prompt_length`` tokens (their end kept)."""
    return preference_dataset(
        [{**ex, "prompt": truncate_prompt(tokenizer, ex["prompt"], max_prompt_length)} for ex in examples]
    )


@costs.phase("prepare_data")  # the trainer tokenises the pairs
def make_trainer(job: Job, settings: Settings, policy: Policy, examples: list[dict] | None = None) -> DPOTrainer:
    """A DPOTrainer for the job's training pairs (:func:`job_pairs`, or ``examples``); TRL's metrics go to our
    Tracker; its checkpoints record the policy's init adapter."""
    args = DPOConfig(
        **common_training_args(settings, job.hardware, job.run_dir, job.seed),
        beta=settings.beta,
        loss_type=[settings.loss_type],
        label_smoothing=settings.label_smoothing,
        max_length=settings.max_length,
        truncation_mode="keep_start",
        precompute_ref_log_probs=settings.precompute_ref_log_probs,
        precompute_ref_batch_size=settings.eval_batch_size,
    )
    trainer = DPOTrainer(
        model=policy.model,
        ref_model=policy.ref_model,
        args=args,
        train_dataset=training_dataset(
            policy.tokenizer,
            job_pairs(job, "auto", "dpo")[0] if examples is None else examples,
            settings.max_prompt_length,
        ),
        processing_class=policy.tokenizer,
        peft_config=policy.peft_config,
        callbacks=[TrackerCallback(job.tracker)],
    )
    if settings.group_by_length:
        group_by_length(trainer)
    record_init_adapter(trainer, policy.init_adapter)
    return trainer


def fit(job: Job, settings: Settings, policy: Policy) -> DPOTrainer:
    """Train on the job's train split; the trained policy is ``trainer.model``."""
    trainer = make_trainer(job, settings, policy)
    run_trainer(trainer, job)
    return trainer


def implicit_rewards(beta: float, logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """beta * (log pi(y|x) - log pi_ref(y|x)) [N] from summed response log-probs [N] of policy and reference."""
    return beta * (logps - ref_logps)


@costs.phase("final_save")
def save_policy(model, tokenizer, adapter_dir: Path) -> None:
    """adapter/: the trained adapter only (not TRL's frozen 'ref' copy), or full weights with lora=none."""
    if getattr(model, "peft_config", None):
        model.save_pretrained(adapter_dir, safe_serialization=True, selected_adapters=["default"])
    else:
        model.save_pretrained(adapter_dir, safe_serialization=True)
    tokenizer.save_pretrained(adapter_dir)


def train(job: Job, settings: Settings) -> dict:
    """Train, save adapter/ (+ tokenizer), and return held-out implicit-reward metrics."""
    policy = build(job, settings)
    test = job.data.test

    @costs.phase("evaluation")
    def logps(model):
        return preference_logprobs(
            model, policy.tokenizer, test, settings.eval_batch_size, settings.max_length, settings.max_prompt_length
        )

    examples, pairs = job_pairs(job, "auto", "dpo")  # the proxy half under dataset.judge_protocol
    trainer = make_trainer(job, settings, policy, examples)
    # The DPO reference is the start policy in every arrangement, so score the test split with it now (the
    # trainer's model: a fresh adapter adds zero), on the device training runs on, not where the weights loaded.
    ref_chosen, ref_rejected = logps(on_training_device(trainer))
    run_trainer(trainer, job)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if job.writes:
        save_policy(model, policy.tokenizer, job.adapter_dir)

    chosen_logps, rejected_logps = logps(model)
    chosen = implicit_rewards(settings.beta, chosen_logps, ref_chosen)
    rejected = implicit_rewards(settings.beta, rejected_logps, ref_rejected)
    metrics = pair_metrics(chosen, rejected, [ex["family"] for ex in test])
    if job.writes:
        with open(job.run_dir / "eval_rewards.jsonl", "w", encoding="utf-8") as handle:
            for ex, c, r, cl, rl in zip(
                test, chosen.tolist(), rejected.tolist(), chosen_logps.tolist(), rejected_logps.tolist()
            ):
                row = {"family": ex["family"], "chosen": c, "rejected": r, "logp_chosen": cl, "logp_rejected": rl}
                handle.write(json.dumps(row) + "\n")
    steps = trainer.state.global_step
    job.tracker.log(metrics, step=steps)
    return {
        **metrics,
        "eval_logps_chosen": chosen_logps.mean().item(),
        "eval_logps_rejected": rejected_logps.mean().item(),
        "train_steps": steps,
        "eval_pairs": len(test),
        "reference": policy.reference,
        "init_adapter": str(policy.init_adapter) if policy.init_adapter else None,
        **pairs,
    }
