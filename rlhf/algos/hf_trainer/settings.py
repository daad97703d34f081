"""TrainingArguments fields shared by every TRL-based algorithm, from our typed settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf.config import HardwareSettings, check
from rlhf.run import distributed
from rlhf.run.rundir import CHECKPOINTS


def common_training_args(algo, hardware: HardwareSettings, run_dir: Path, seed: int) -> dict:
    """Keyword arguments for a TRL *Config (a TrainingArguments subclass).

    ``algo`` is an algorithm's settings with learning_rate, lr_scheduler_type, warmup_ratio,
    weight_decay, num_train_epochs, max_steps, batch_size, max_grad_norm, logging_steps, save_every and
    keep_checkpoints (resumable checkpoints in run_dir/checkpoints, see rlhf/algos/hf_trainer/loop.py).
    ``algo.group_by_length`` is applied to the built trainer (rlhf/algos/hf_trainer/length_grouping.py), not here.
    """
    # algo.batch_size is the global batch: the launch's processes share it (rlhf/run/distributed.py)
    micro, accumulation = hardware.accumulation_steps(algo.batch_size, "algo.batch_size", distributed.world_size())
    return dict(
        output_dir=str(Path(run_dir) / CHECKPOINTS),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        learning_rate=algo.learning_rate,
        lr_scheduler_type=algo.lr_scheduler_type,
        warmup_steps=algo.warmup_ratio,  # transformers 5: a float below 1 is a share of the steps
        weight_decay=algo.weight_decay,
        num_train_epochs=algo.num_train_epochs,
        max_steps=algo.max_steps,
        max_grad_norm=algo.max_grad_norm,
        logging_steps=algo.logging_steps,
        save_strategy="steps",
        save_steps=algo.save_every,
        save_total_limit=algo.keep_checkpoints,
        eval_strategy="no",
        report_to="none",  # our Tracker logs to W&B, so one run holds everything
        seed=seed,
        data_seed=seed,
        bf16=hardware.bf16,  # TRL turns bf16 on when left unset; on CPU it must be explicit
        # transformers 5 renamed gradient_checkpointing; the old name (TRL defaults it to True) still mirrors this
        activation_checkpointing=hardware.gradient_checkpointing,
        optim=hardware.optim,
        use_cpu=not hardware.cuda,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def check_trainer_settings(algo) -> None:
    """Range checks shared by every TRL-based algorithm's Settings (the fields common_training_args reads,
    plus max_length, eval_batch_size and, where the algorithm has one, max_prompt_length)."""
    check(0 < algo.learning_rate < 1, "algo.learning_rate", algo.learning_rate, "must be in (0, 1), e.g. 3e-4 for LoRA")
    check(0 <= algo.warmup_ratio < 1, "algo.warmup_ratio", algo.warmup_ratio, "must be in [0, 1)")
    check(algo.weight_decay >= 0, "algo.weight_decay", algo.weight_decay, "must be >= 0")
    check(algo.num_train_epochs > 0, "algo.num_train_epochs", algo.num_train_epochs, "must be > 0")
    check(
        algo.max_steps == -1 or algo.max_steps >= 1, "algo.max_steps", algo.max_steps, "must be >= 1, or -1 for epochs"
    )
    check(algo.batch_size >= 1, "algo.batch_size", algo.batch_size, "must be >= 1")
    check(algo.max_length >= 16, "algo.max_length", algo.max_length, "must be >= 16 tokens")
    check(algo.max_grad_norm > 0, "algo.max_grad_norm", algo.max_grad_norm, "must be > 0")
    check(algo.logging_steps >= 1, "algo.logging_steps", algo.logging_steps, "must be >= 1")
    check(algo.save_every >= 1, "algo.save_every", algo.save_every, "must be >= 1 optimizer steps between checkpoints")
    check(algo.keep_checkpoints >= 1, "algo.keep_checkpoints", algo.keep_checkpoints, "must be >= 1")
    check(algo.eval_batch_size >= 1, "algo.eval_batch_size", algo.eval_batch_size, "must be >= 1")
    max_prompt_length = getattr(algo, "max_prompt_length", None)
    if max_prompt_length is not None:
        check(
            1 <= max_prompt_length < algo.max_length,
            "algo.max_prompt_length",
            max_prompt_length,
            f"must be >= 1 and < algo.max_length={algo.max_length}, so every example keeps response tokens "
            f"(e.g. algo.max_prompt_length={algo.max_length // 2})",
        )


@dataclass(frozen=True)
class TrainerSettings:
    """The fields every TRL-based algorithm's Settings shares (conf/algo/{rm,sft,dpo}.yaml); each
    algorithm subclasses it with its own fields and checks, calling ``super().__post_init__()``."""

    name: str
    optimized_metric: str
    learning_rate: float
    lr_scheduler_type: str
    warmup_ratio: float
    weight_decay: float
    num_train_epochs: float
    max_steps: int
    batch_size: int
    group_by_length: bool
    max_length: int
    max_grad_norm: float
    logging_steps: int
    save_every: int
    keep_checkpoints: int
    eval_batch_size: int

    def __post_init__(self):
        check_trainer_settings(self)
