"""Supervised fine-tuning on the preferred responses: TRL's SFTTrainer on prompt + chosen, loss on the response only.

The usual first step when the start model is a base model (the DPO paper fine-tunes on HH preferred
completions before DPO); ``python train.py algo=dpo algo.init_adapter=outputs/latest/sft`` continues from it.
Each preference example becomes ``{"prompt": messages, "completion": chosen}`` (TRL's conversational
prompt-completion format); TRL masks the prompt tokens out of the labels (``completion_only_loss``).
The prompt is cut to ``max_prompt_length`` tokens keeping its end, as in DPO (rlhf/modeling/logprobs.py).
Held-out metric: ``eval_loss``, the mean per-token negative log-likelihood of the test split's chosen responses,
before training (on the device training runs on, hf_trainer/placement.py) and after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from rlhf.algos.hf_trainer.columns import job_pairs
from rlhf.algos.hf_trainer.length_grouping import group_by_length
from rlhf.algos.hf_trainer.loop import run_trainer
from rlhf.algos.hf_trainer.placement import on_training_device
from rlhf.algos.hf_trainer.settings import TrainerSettings, common_training_args
from rlhf.modeling.logprobs import response_logprobs, truncate_prompt
from rlhf.modeling.models import add_adapter, load_causal_lm
from rlhf.run import costs
from rlhf.run.job import Job
from rlhf.run.tracking import TrackerCallback

__all__ = ["Settings", "build", "make_trainer", "fit", "train", "sft_dataset", "evaluate_nll"]


@dataclass(frozen=True)
class Settings(TrainerSettings):
    """conf/algo/sft.yaml: the shared trainer fields (TrainerSettings) and these."""

    max_prompt_length: int


def sft_dataset(tokenizer, examples: list[dict], max_prompt_length: int) -> Dataset:
    """TRL's conversational prompt-completion rows: the (cut) prompt and the chosen response."""
    return Dataset.from_list(
        [
            {"prompt": truncate_prompt(tokenizer, ex["prompt"], max_prompt_length), "completion": ex["chosen"]}
            for ex in examples
        ]
    )


@costs.phase("load_model")
def build(job: Job):
    """(tokenizer, policy): the causal LM with a fresh trainable LoRA adapter (or whole, with lora=none)."""
    backbone = load_causal_lm(job.model_path, job.model, job.hardware, job.tokenizer)
    return job.tokenizer, add_adapter(backbone, job.lora, "CAUSAL_LM")


@costs.phase("prepare_data")  # the trainer tokenises the examples
def make_trainer(job: Job, settings: Settings, tokenizer, model, examples: list[dict] | None = None) -> SFTTrainer:
    args = SFTConfig(
        **common_training_args(settings, job.hardware, job.run_dir, job.seed),
        max_length=settings.max_length,
        truncation_mode="keep_start",
        completion_only_loss=True,  # labels are -100 on the prompt: the loss is on the response only
        packing=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=sft_dataset(
            tokenizer, job_pairs(job, "auto", "sft")[0] if examples is None else examples, settings.max_prompt_length
        ),
        processing_class=tokenizer,
        callbacks=[TrackerCallback(job.tracker)],
    )
    if settings.group_by_length:
        group_by_length(trainer)
    return trainer


def fit(job: Job, settings: Settings, tokenizer, model) -> int:
    """Train ``model`` in place on the job's train split; returns the number of optimizer steps."""
    trainer = make_trainer(job, settings, tokenizer, model)
    run_trainer(trainer, job)
    return trainer.state.global_step


@costs.phase("evaluation")
def evaluate_nll(model, tokenizer, examples: list[dict], settings: Settings) -> dict[str, float]:
    """Mean per-token NLL (and perplexity) of the chosen responses of ``examples``."""
    logps, tokens = response_logprobs(
        model,
        tokenizer,
        [ex["prompt"] for ex in examples],
        [ex["chosen"] for ex in examples],
        settings.eval_batch_size,
        settings.max_length,
        settings.max_prompt_length,
    )
    nll = -(logps.sum() / tokens.sum().clamp(min=1)).item()
    return {
        "eval_loss": nll,
        "eval_perplexity": math.exp(min(nll, 50.0)),
        "eval_response_tokens": int(tokens.sum().item()),
    }


def train(job: Job, settings: Settings) -> dict:
    """Train, save adapter/ (+ tokenizer), and return held-out response NLL before and after."""
    tokenizer, model = build(job)
    examples, pairs = job_pairs(job, "auto", "sft")  # the proxy half under dataset.judge_protocol
    trainer = make_trainer(job, settings, tokenizer, model, examples)
    # Before training, where training runs (the weights loaded on the CPU; the Trainer may not have moved them).
    before = evaluate_nll(on_training_device(trainer), tokenizer, job.data.test, settings)["eval_loss"]
    steps = run_trainer(trainer, job)
    with costs.phase("final_save"):
        if job.writes:
            model.save_pretrained(job.adapter_dir, safe_serialization=True)
            tokenizer.save_pretrained(job.adapter_dir)
    metrics = evaluate_nll(model, tokenizer, job.data.test, settings)
    job.tracker.log(metrics, step=steps)
    return {
        **metrics,
        "eval_loss_before": before,
        "train_steps": steps,
        "eval_examples": len(job.data.test),
        **pairs,
    }
