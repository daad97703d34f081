"""Reward model: TRL RewardTrainer (Bradley-Terry loss) on a LoRA sequence classifier.

loss = -log sigmoid(r(x, y_chosen) - r(x, y_rejected)); the score head is trained and saved with
the adapter (``modules_to_save``), so reloading adapter/ gives the same rewards.
"""

from __future__ import annotations

import json

from datasets import Dataset
from trl import RewardConfig, RewardTrainer

from rlhf.config import RewardModelSettings as Settings
from rlhf.job import Job
from rlhf.models import add_adapter, load_reward_backbone, load_tokenizer, model_directory
from rlhf.reward_scoring import pair_metrics, score_conversations
from rlhf.tracking import TrackerCallback
from rlhf.trainer_args import common_training_args

__all__ = ["Settings", "train", "evaluate_pairs"]


def preference_dataset(examples: list[dict]) -> Dataset:
    """The columns TRL's preference trainers read (the family tag stays with us)."""
    return Dataset.from_list([{k: ex[k] for k in ("prompt", "chosen", "rejected")} for ex in examples])


def evaluate_pairs(model, tokenizer, examples: list[dict], batch_size: int, max_length: int):
    """Rewards of chosen and rejected responses [N] each, and the pair metrics."""
    chosen = score_conversations(model, tokenizer, [ex["prompt"] + ex["chosen"] for ex in examples], batch_size, max_length)
    rejected = score_conversations(model, tokenizer, [ex["prompt"] + ex["rejected"] for ex in examples], batch_size, max_length)
    return chosen, rejected, pair_metrics(chosen, rejected, [ex["family"] for ex in examples])


def train(job: Job, settings: Settings) -> dict:
    """Train, save adapter/ (+ score head and tokenizer), and return held-out metrics."""
    path = model_directory(job.model)
    tokenizer = load_tokenizer(path, job.model)
    backbone = load_reward_backbone(path, job.model, job.hardware, tokenizer)
    model = add_adapter(backbone, job.lora, "SEQ_CLS", modules_to_save=["score"])
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
    trainer.train()

    model.save_pretrained(job.adapter_dir, safe_serialization=True)
    tokenizer.save_pretrained(job.adapter_dir)

    chosen, rejected, metrics = evaluate_pairs(model, tokenizer, job.data.test, settings.eval_batch_size, settings.max_length)
    with open(job.run_dir / "eval_rewards.jsonl", "w", encoding="utf-8") as handle:
        for ex, c, r in zip(job.data.test, chosen.tolist(), rejected.tolist()):
            handle.write(json.dumps({"family": ex["family"], "chosen": c, "rejected": r}) + "\n")
    job.tracker.log(metrics, step=trainer.state.global_step)
    return {**metrics, "train_steps": trainer.state.global_step, "eval_pairs": len(job.data.test)}
