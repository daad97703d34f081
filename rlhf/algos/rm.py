"""Reward model: TRL RewardTrainer (Bradley-Terry loss) on a LoRA sequence classifier.

loss = -log sigmoid(r(x, y_chosen) - r(x, y_rejected)); the score head is trained and saved with
the adapter (``modules_to_save``), so reloading adapter/ gives the same rewards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from trl import RewardConfig, RewardTrainer

from rlhf.algos.hf_trainer.columns import preference_dataset
from rlhf.algos.hf_trainer.length_grouping import group_by_length
from rlhf.algos.hf_trainer.loop import run_trainer
from rlhf.algos.hf_trainer.settings import TrainerSettings, common_training_args
from rlhf.modeling.models import add_adapter, load_reward_backbone
from rlhf.modeling.reward_scoring import pair_metrics, score_conversations
from rlhf.run.job import Job
from rlhf.run.tracking import TrackerCallback

__all__ = ["Settings", "train", "build", "fit", "evaluate_pairs"]


@dataclass(frozen=True)
class Settings(TrainerSettings):
    """conf/algo/rm.yaml: the shared trainer fields (TrainerSettings) and these."""

    center_rewards_coefficient: float | None


def evaluate_pairs(model, tokenizer, examples: list[dict], batch_size: int, max_length: int):
    """Rewards of chosen and rejected responses [N] each, and the pair metrics."""
    chosen = score_conversations(
        model, tokenizer, [ex["prompt"] + ex["chosen"] for ex in examples], batch_size, max_length
    )
    rejected = score_conversations(
        model, tokenizer, [ex["prompt"] + ex["rejected"] for ex in examples], batch_size, max_length
    )
    return chosen, rejected, pair_metrics(chosen, rejected, [ex["family"] for ex in examples])


def build(job: Job):
    """(tokenizer, reward model): the backbone with a fresh LoRA adapter and a trainable score head."""
    backbone = load_reward_backbone(job.model_path, job.model, job.hardware, job.tokenizer)
    return job.tokenizer, add_adapter(backbone, job.lora, "SEQ_CLS", modules_to_save=["score"])


def fit(job: Job, settings: Settings, tokenizer, model) -> int:
    """Train ``model`` in place on the job's train split; returns the number of optimizer steps."""
    args = RewardConfig(
        **common_training_args(settings, job.hardware, job.run_dir, job.seed),
        max_length=settings.max_length,
        center_rewards_coefficient=settings.center_rewards_coefficient,
    )
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=preference_dataset(job.data.train),
        processing_class=tokenizer,
        callbacks=[TrackerCallback(job.tracker)],
    )
    if settings.group_by_length:
        group_by_length(trainer)
    run_trainer(trainer, job)
    return trainer.state.global_step


def train(job: Job, settings: Settings) -> dict:
    """Train, save adapter/ (+ score head and tokenizer), and return held-out metrics."""
    tokenizer, model = build(job)
    steps = fit(job, settings, tokenizer, model)
    if job.writes:
        model.save_pretrained(job.adapter_dir, safe_serialization=True)
        tokenizer.save_pretrained(job.adapter_dir)

    chosen, rejected, metrics = evaluate_pairs(
        model, tokenizer, job.data.test, settings.eval_batch_size, settings.max_length
    )
    if job.writes:
        with open(job.run_dir / "eval_rewards.jsonl", "w", encoding="utf-8") as handle:
            for ex, c, r in zip(job.data.test, chosen.tolist(), rejected.tolist()):
                handle.write(json.dumps({"family": ex["family"], "chosen": c, "rejected": r}) + "\n")
    job.tracker.log(metrics, step=steps)
    return {**metrics, "train_steps": steps, "eval_pairs": len(job.data.test)}
