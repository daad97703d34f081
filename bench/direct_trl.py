"""The baseline without the framework: TRL's RewardTrainer / DPOTrainer called directly.

    python -m bench.direct_trl rm  OUT_DIR [overrides...]
    python -m bench.direct_trl dpo OUT_DIR [overrides...]

What a user of plain TRL would write: load the model with transformers, give the trainer a
LoraConfig, train. The numbers (hyperparameters, LoRA, precision, batch and micro batch, seed) are read
from the same Hydra config train.py composes with the same overrides, and the same preference
examples (rlhf.data, DPO prompts cut by the same rule) in the same batches (rlhf.algos.hf_trainer.length_grouping
when ``algo.group_by_length``), so the only difference from
``train.py algo=...`` is the framework around the trainer: no run directory contract, no tracker, no
checkpoints, no held-out evaluation. Writes OUT_DIR/steps.json (bench/steptimer.py) and
OUT_DIR/summary.json (``wall_time_s``, ``peak_rss_mb``) like a train.py run.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, set_seed
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

from bench.common import compose, model_dir
from bench.steptimer import StepTimer
from rlhf.algos.hf_trainer.length_grouping import group_by_length
from rlhf.config import DatasetSettings, from_node
from rlhf.data.preference import load_preference_splits
from rlhf.modeling.chat_templates import CHAT_TEMPLATES
from rlhf.modeling.logprobs import truncate_prompt


def training_args(cfg, out: Path) -> dict:
    algo, hw = cfg.algo, cfg.hardware
    micro = min(hw.micro_batch_size, algo.batch_size)
    return dict(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=algo.batch_size // micro,
        learning_rate=algo.learning_rate,
        lr_scheduler_type=algo.lr_scheduler_type,
        warmup_steps=algo.warmup_ratio,
        weight_decay=algo.weight_decay,
        num_train_epochs=algo.num_train_epochs,
        max_steps=algo.max_steps,
        max_grad_norm=algo.max_grad_norm,
        logging_steps=algo.logging_steps,
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=hw.bf16,
        activation_checkpointing=hw.gradient_checkpointing,
        optim=hw.optim,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def lora(cfg, task_type: str, modules_to_save=None) -> LoraConfig:
    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("rm", "dpo"):
        raise SystemExit(__doc__.splitlines()[2].strip() + "\n" + __doc__.splitlines()[3].strip())
    algo, out, overrides = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)
    cfg = compose([f"algo={algo}", *overrides])
    started = time.time()  # as train.py's wall_time_s: from the composed config on
    if cfg.hardware.num_threads:
        torch.set_num_threads(cfg.hardware.num_threads)
    set_seed(cfg.seed)
    dtype = getattr(torch, cfg.hardware.dtype)

    path = model_dir(cfg)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = cfg.model.pad_token
    if cfg.model.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATES[cfg.model.chat_template]
    examples = load_preference_splits(from_node(DatasetSettings, cfg.dataset, "dataset")).train

    timer = StepTimer(out / "steps.json")
    if algo == "rm":
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
        model.config.pad_token_id = tokenizer.pad_token_id
        data = Dataset.from_list([{k: ex[k] for k in ("prompt", "chosen", "rejected")} for ex in examples])
        args = RewardConfig(
            **training_args(cfg, out),
            max_length=cfg.algo.max_length,
            center_rewards_coefficient=cfg.algo.center_rewards_coefficient,
        )
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=lora(cfg, "SEQ_CLS", ["score"]),
            callbacks=[timer],
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model.config.pad_token_id = tokenizer.pad_token_id
        data = Dataset.from_list(
            [
                {
                    "prompt": truncate_prompt(tokenizer, ex["prompt"], cfg.algo.max_prompt_length),
                    "chosen": ex["chosen"],
                    "rejected": ex["rejected"],
                }
                for ex in examples
            ]
        )
        args = DPOConfig(
            **training_args(cfg, out),
            beta=cfg.algo.beta,
            loss_type=[cfg.algo.loss_type],
            label_smoothing=cfg.algo.label_smoothing,
            max_length=cfg.algo.max_length,
            truncation_mode="keep_start",
            precompute_ref_log_probs=cfg.algo.precompute_ref_log_probs,
            precompute_ref_batch_size=cfg.algo.eval_batch_size,
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=lora(cfg, "CAUSAL_LM"),
            callbacks=[timer],
        )
    if cfg.algo.group_by_length:  # the same data order as train.py: a setting, not the framework's overhead
        group_by_length(trainer)
    trainer.train()

    summary = {
        "algo": algo,
        "model": cfg.model.name,
        "status": "finished",
        "train_steps": trainer.state.global_step,
        "wall_time_s": round(time.time() - started, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
