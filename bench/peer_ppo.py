"""The peer: TRL 1.12's PPOTrainer (``trl.experimental.ppo``) on the settings bench/ppo_iteration.py hands it.

    PEER_VENV/bin/python -m bench.peer_ppo SPEC.json OUT_DIR    # from the repo root

Runs in the second virtualenv (``make bench-peer``: trl==1.12.0, the last TRL with a PPOTrainer), so it
imports nothing from rlhf. SPEC.json (written by bench/ppo_iteration.py from the same config as our run)
holds the model directory, the pad token, the reward model's adapter, the prompts already tokenized by
our rollout code, and the PPO settings. The models are what a TRL 1.12 user builds: the policy is the
causal LM with ``peft_config`` (LoRA; the reference is the policy with its adapter disabled), the reward
model is a sequence classifier with the rm run's adapter merged in (frozen), and the value model is a
second such classifier, a full trainable copy (TRL's PolicyAndValueWrapper trains all its weights).

Writes OUT_DIR/summary.json: per iteration the wall time (between ``on_step_end`` calls), generation
time (``batch_generation``), scoring time (the no-grad ``forward`` / ``get_reward`` calls: reference,
value and reward), generated tokens (up to and including the first EOS), and the process's
``peak_rss_mb`` and ``wall_time_s``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch
import trl
from datasets import Dataset
from peft import LoraConfig, PeftModel
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerCallback,
    set_seed,
)
from trl.experimental.ppo import PPOConfig, PPOTrainer
from trl.experimental.ppo import ppo_trainer as trl_ppo

PHASES = {"rollout": 0.0, "score": 0.0, "tokens": 0}


def timed_generation(original, eos_id: int):
    """batch_generation, timed, counting the generated tokens up to and including the first EOS."""

    def wrapper(model, queries, *args, **kwargs):
        started = time.perf_counter()
        query_responses, logits = original(model, queries, *args, **kwargs)
        PHASES["rollout"] += time.perf_counter() - started
        responses = query_responses[:, queries.shape[1] :]
        is_eos = responses == eos_id
        first = torch.where(
            is_eos.any(1),
            is_eos.float().argmax(1) + 1,
            torch.full_like(is_eos[:, 0], responses.shape[1], dtype=torch.long),
        )
        PHASES["tokens"] += int(first.sum())
        return query_responses, logits

    return wrapper


def timed_scoring(original):
    """forward / get_reward, timed when they run without gradients (rollout scoring, not the update)."""

    def wrapper(*args, **kwargs):
        if torch.is_grad_enabled():
            return original(*args, **kwargs)
        started = time.perf_counter()
        out = original(*args, **kwargs)
        PHASES["score"] += time.perf_counter() - started
        return out

    return wrapper


class IterationTimer(TrainerCallback):
    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.last = None
        self.iterations: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        total = now - self.last
        self.iterations.append(
            {
                "time/iteration": total,
                "time/rollout": PHASES["rollout"],
                "time/score": PHASES["score"],
                "time/update_and_other": total - PHASES["rollout"] - PHASES["score"],
                "tokens": PHASES["tokens"],
                "response/length": PHASES["tokens"] / self.batch_size,
                "perf/tokens_per_s": PHASES["tokens"] / total,
                "perf/gen_tokens_per_s": PHASES["tokens"] / PHASES["rollout"] if PHASES["rollout"] else None,
            }
        )
        PHASES.update(rollout=0.0, score=0.0, tokens=0)
        self.last = time.perf_counter()


def reward_classifier(spec: dict, dtype, pad_id: int, trainable: bool):
    """The rm run's adapter merged into a sequence classifier (TRL 1.12 wants plain models for reward and value)."""
    model = AutoModelForSequenceClassification.from_pretrained(spec["model_dir"], num_labels=1, dtype=dtype)
    model.config.pad_token_id = pad_id
    model = PeftModel.from_pretrained(model, spec["rm_adapter"]).merge_and_unload()
    model.requires_grad_(trainable)
    return model.train() if trainable else model.eval()


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.splitlines()[2].strip())
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if spec.get("num_threads"):
        torch.set_num_threads(spec["num_threads"])
    set_seed(spec["seed"])
    dtype = getattr(torch, spec["dtype"])

    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    tokenizer.pad_token = spec["pad_token"]
    tokenizer.padding_side = "left"  # TRL's PPO generates from left-padded queries
    policy = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=dtype)
    policy.config.pad_token_id = tokenizer.pad_token_id
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    reward = reward_classifier(spec, dtype, tokenizer.pad_token_id, trainable=False)
    # the value model is initialised from the reward model, as ours
    value = reward_classifier(spec, dtype, tokenizer.pad_token_id, trainable=True)

    trl_ppo.batch_generation = timed_generation(trl_ppo.batch_generation, tokenizer.eos_token_id)
    trl_ppo.forward = timed_scoring(trl_ppo.forward)
    trl_ppo.get_reward = timed_scoring(trl_ppo.get_reward)

    prompts = Dataset.from_dict({"input_ids": spec["prompt_ids"]})
    micro = spec["micro_batch_size"]
    args = PPOConfig(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=spec["batch_size"] // micro,
        local_rollout_forward_batch_size=spec["batch_size"],  # ours generates and scores the whole batch at once
        total_episodes=spec["iterations"] * spec["batch_size"],
        num_ppo_epochs=spec["ppo_epochs"],
        num_mini_batches=spec["num_mini_batches"],
        response_length=spec["max_new_tokens"],
        temperature=spec["temperature"],
        stop_token="eos",
        missing_eos_penalty=spec["missing_eos_penalty"],
        kl_coef=spec["kl_coef"],
        kl_estimator=spec["kl_estimator"],
        cliprange=spec["cliprange"],
        cliprange_value=spec["cliprange_value"],
        vf_coef=spec["vf_coef"],
        gamma=spec["gamma"],
        lam=spec["lam"],
        whiten_rewards=spec["whiten_rewards"],
        learning_rate=spec["learning_rate"],
        lr_scheduler_type=spec["lr_scheduler_type"],
        adam_epsilon=spec["adam_eps"],
        seed=spec["seed"],
        bf16=spec["bf16"],
        gradient_checkpointing=spec["gradient_checkpointing"],
        use_cpu=not torch.cuda.is_available(),
        num_sample_generations=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    peft_config = LoraConfig(
        r=spec["lora"]["r"],
        lora_alpha=spec["lora"]["alpha"],
        lora_dropout=spec["lora"]["dropout"],
        target_modules=spec["lora"]["target_modules"],
        task_type="CAUSAL_LM",
    )
    timer = IterationTimer(spec["batch_size"])
    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=None,
        reward_model=reward,
        value_model=value,
        train_dataset=prompts,
        eval_dataset=prompts.select(range(spec["batch_size"])),
        peft_config=peft_config,
        callbacks=[timer],
    )
    trainer.train()

    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    summary = {
        "trl": trl.__version__,
        "torch": torch.__version__,
        "status": "finished",
        "iterations": timer.iterations,
        "trainable_params": trainable,
        "wall_time_s": round(time.time() - started, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
