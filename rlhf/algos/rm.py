"""Reward model: TRL RewardTrainer (Bradley-Terry loss) on a LoRA sequence classifier.

loss = -log sigmoid(r(x, y_chosen) - r(x, y_rejected)); the score head is trained and saved with
the adapter (``modules_to_save``), so reloading adapter/ gives the same rewards. The same module trains
evaluate.py's independent judge (``algo=judge``): only the half of the training pairs differs
(``algo.pairs``, rlhf/data/halves.py). Pairs longer than ``algo.max_length`` lose leading prompt turns
rather than vanish inside TRL (rlhf/modeling/pair_length.py). With ``algo.init_adapter`` (an SFT run) the
reward model starts from the SFT policy, as N+'s does: that adapter is merged into the backbone, the fresh LoRA
and head train on top, and summary.json records it (path and sha256) so every loader merges the same one
(models.load_reward_run).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from trl import RewardConfig, RewardTrainer

from rlhf.algos.hf_trainer.checkpoints import record_init_adapter, start_adapter
from rlhf.algos.hf_trainer.columns import job_pairs, preference_dataset
from rlhf.algos.hf_trainer.length_grouping import group_by_length
from rlhf.algos.hf_trainer.loop import last_checkpoint, run_trainer
from rlhf.algos.hf_trainer.settings import TrainerSettings, common_training_args
from rlhf.config import check_choice, check_init_adapter_value
from rlhf.data import halves
from rlhf.errors import ConfigError
from rlhf.modeling.fingerprints import init_adapter_record
from rlhf.modeling.models import add_adapter, load_reward_backbone, merge_adapter
from rlhf.modeling.pair_length import fit_pairs
from rlhf.modeling.reward_scoring import pair_metrics, score_conversations
from rlhf.run import costs
from rlhf.run.job import Job
from rlhf.run.tracking import TrackerCallback

__all__ = ["Settings", "train", "build", "fit", "evaluate_pairs", "training_pairs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings(TrainerSettings):
    """conf/algo/rm.yaml (and judge.yaml): the shared trainer fields (TrainerSettings) and these."""

    center_rewards_coefficient: float | None
    pairs: str
    init_adapter: str | None

    def __post_init__(self):
        super().__post_init__()
        check_choice("algo.pairs", self.pairs, halves.PAIR_CHOICES)
        check_init_adapter_value(self.init_adapter)


def training_pairs(job: Job, settings: Settings) -> tuple[list[dict], dict]:
    """The pairs to train on (the ``algo.pairs`` half, rlhf/data/halves.py, fitted to ``algo.max_length``) and what
    summary.json records about them: the half's record (halves.RECORD_KEYS: ``pairs``, its salt, scheme, count and
    hash), ``pairs_cut_for_length``, ``pairs_dropped_for_length``."""
    chosen, record = job_pairs(job, settings.pairs, settings.name)
    fitted = fit_pairs(job.tokenizer, chosen, settings.max_length)
    log.info("%s (algo.pairs=%s)", fitted.report(settings.max_length), record["pairs"])
    if not fitted.examples:
        raise ConfigError(
            f"algo.max_length={settings.max_length}: every one of the {len(chosen)} training pairs has a response "
            "too long to fit; raise algo.max_length"
        )
    return fitted.examples, {
        **record,
        "pairs_cut_for_length": fitted.cut,
        "pairs_dropped_for_length": fitted.dropped,
    }


@costs.phase("evaluation")
def evaluate_pairs(model, tokenizer, examples: list[dict], batch_size: int, max_length: int):
    """Rewards of chosen and rejected responses [N] each, and the pair metrics."""
    chosen = score_conversations(
        model, tokenizer, [ex["prompt"] + ex["chosen"] for ex in examples], batch_size, max_length
    )
    rejected = score_conversations(
        model, tokenizer, [ex["prompt"] + ex["rejected"] for ex in examples], batch_size, max_length
    )
    return chosen, rejected, pair_metrics(chosen, rejected, [ex["family"] for ex in examples])


@costs.phase("load_model")
def build(job: Job, init_adapter: Path | None = None):
    """(tokenizer, reward model): the backbone (with ``init_adapter`` merged in) with a fresh LoRA adapter and a
    trainable score head."""
    backbone = load_reward_backbone(job.model_path, job.model, job.hardware, job.tokenizer)
    if init_adapter is not None:
        backbone = merge_adapter(backbone, init_adapter)
    return job.tokenizer, add_adapter(backbone, job.lora, "SEQ_CLS", modules_to_save=["score"])


def fit(job: Job, settings: Settings, tokenizer, model, examples: list[dict], init_adapter: Path | None = None) -> int:
    """Train ``model`` in place on ``examples`` (:func:`training_pairs`); returns the number of optimizer steps."""
    with costs.phase("prepare_data"):  # the trainer tokenises the pairs
        args = RewardConfig(
            **common_training_args(settings, job.hardware, job.run_dir, job.seed),
            max_length=settings.max_length,
            center_rewards_coefficient=settings.center_rewards_coefficient,
        )
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=preference_dataset(examples),
            processing_class=tokenizer,
            callbacks=[TrackerCallback(job.tracker)],
        )
        if settings.group_by_length:
            group_by_length(trainer)
        record_init_adapter(trainer, init_adapter)
    run_trainer(trainer, job)
    return trainer.state.global_step


def train(job: Job, settings: Settings) -> dict:
    """Train, save adapter/ (+ score head and tokenizer), and return held-out metrics and the pair counts."""
    examples, counts = training_pairs(job, settings)  # before the weights load: a bad choice fails at once
    init_adapter = start_adapter(job, settings.init_adapter, last_checkpoint(job.run_dir) if job.resume else None)
    tokenizer, model = build(job, init_adapter)
    steps = fit(job, settings, tokenizer, model, examples, init_adapter)
    with costs.phase("final_save"):
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
    start = {"init_adapter": init_adapter_record(init_adapter)} if init_adapter else {}
    return {**metrics, **counts, **start, "train_steps": steps, "eval_pairs": len(job.data.test)}
