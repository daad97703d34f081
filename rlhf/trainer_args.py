"""TrainingArguments fields shared by every TRL-based algorithm, from our typed settings."""

from __future__ import annotations

from pathlib import Path

import torch

from rlhf.config import HardwareSettings


def common_training_args(algo, hardware: HardwareSettings, run_dir: Path, seed: int) -> dict:
    """Keyword arguments for a TRL *Config (a TrainingArguments subclass).

    ``algo`` is an algorithm's settings with learning_rate, lr_scheduler_type, warmup_ratio,
    weight_decay, num_train_epochs, max_steps, batch_size, max_grad_norm and logging_steps.
    """
    micro, accumulation = hardware.accumulation_steps(algo.batch_size, "algo.batch_size")
    return dict(
        output_dir=str(Path(run_dir) / "checkpoints"),
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
        save_strategy="no",
        eval_strategy="no",
        report_to="none",  # our Tracker logs to W&B, so one run holds everything
        seed=seed,
        data_seed=seed,
        bf16=hardware.bf16,  # TRL turns bf16 on when left unset; on CPU it must be explicit
        gradient_checkpointing=hardware.gradient_checkpointing,
        optim=hardware.optim,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
