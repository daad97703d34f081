"""A Trainer run's phase seconds and token counts, into this process's accumulator (rlhf/run/costs.py).

run_trainer (loop.py) times ``trainer.train()`` as the phase "training" and calls :func:`track_costs`, which adds

- :class:`CostCallback`: the time from the last step boundary to ``on_evaluate`` is "evaluation", to ``on_save``
  "checkpoint", both taken out of "training" (which keeps the optimizer steps, their data loading and logging);
- token and episode counters on the trainer's own methods (instance attributes, so nothing else changes):
    rm, sft, dpo   each training micro batch's attention mask sum, forwarded and backpropagated, and its examples
                   as episodes (rm and dpo batches hold a pair's chosen and rejected rows: one episode a pair);
                   DPO's reference forward reads the batch again (forwarded only), or, with
                   ``precompute_ref_log_probs``, each precomputed batch once;
    grpo, rloo     (TRL 1.16's methods) each rollout's prompt and completion tokens forwarded twice (sampling, and
                   the reward model's read) and its completions as episodes; every log-prob forward (old policy,
                   reference, and the update, which is also backpropagated); the rollout as "generation" and its
                   scoring as "scoring" inside "training".
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import torch
from transformers import Trainer, TrainerCallback
from trl import DPOTrainer, GRPOTrainer, RewardTrainer, RLOOTrainer

from rlhf.run import costs

PAIRED = (RewardTrainer, DPOTrainer)  # a batch holds [chosen rows; rejected rows]
ONLINE = (GRPOTrainer, RLOOTrainer)  # a training step may roll out, score and then update


class CostCallback(TrainerCallback):
    """Splits "evaluation" and "checkpoint" off "training": each is the time since the last step began or ended
    (or the last evaluation or save ended) when its event comes."""

    def __init__(self):
        self.mark = time.perf_counter()

    def _since_mark(self) -> float:
        now = time.perf_counter()
        seconds, self.mark = now - self.mark, now
        return seconds

    def on_train_begin(self, args, state, control, **kwargs):
        self._since_mark()

    def on_step_begin(self, args, state, control, **kwargs):
        self._since_mark()

    def on_step_end(self, args, state, control, **kwargs):
        self._since_mark()

    def on_evaluate(self, args, state, control, **kwargs):
        costs.record("evaluation", self._since_mark())

    def on_save(self, args, state, control, **kwargs):
        costs.record("checkpoint", self._since_mark())


def track_costs(trainer: Trainer) -> None:
    """Add the callback and the counters the module docstring lists to ``trainer`` (once, before training)."""
    trainer.add_callback(CostCallback())
    if isinstance(trainer, ONLINE):
        _count_rollouts(trainer)
    else:
        _count_batches(trainer)


def _count_batches(trainer: Trainer) -> None:
    train_step = trainer.training_step
    rows_per_example = 2 if isinstance(trainer, PAIRED) else 1
    reference_reads = int(isinstance(trainer, DPOTrainer) and not trainer.precompute_ref_logps)

    def counted_step(model, inputs, *args, **kwargs):
        if isinstance(inputs, Mapping) and "attention_mask" in inputs:
            tokens = int(inputs["attention_mask"].sum())
            costs.add_tokens(forwarded=tokens * (1 + reference_reads), backpropagated=tokens)
            costs.add_episodes(len(inputs["attention_mask"]) // rows_per_example)
        return train_step(model, inputs, *args, **kwargs)

    trainer.training_step = counted_step
    if isinstance(trainer, DPOTrainer):
        reference = trainer.compute_ref_log_probs  # the precompute pass, before the first step

        def counted_reference(model, inputs):
            costs.add_tokens(forwarded=inputs["attention_mask"].sum())
            return reference(model, inputs)

        trainer.compute_ref_log_probs = counted_reference


def _count_rollouts(trainer: Trainer) -> None:
    generate, score, logps = (
        trainer._generate,
        trainer._generate_and_score_completions,
        trainer._get_per_token_logps_and_entropies,
    )

    def counted_generate(prompts, *args, **kwargs):
        with costs.phase("generation"):
            out = generate(prompts, *args, **kwargs)
        if trainer.model.training:  # TRL generates for its own evaluation in eval mode (we never ask it to)
            prompt_ids, completion_ids = out[0], out[1]  # GRPO and RLOO return these first
            costs.add_tokens(forwarded=2 * sum(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids)))
            costs.add_episodes(len(completion_ids))
        return out

    def scored(*args, **kwargs):
        with costs.phase("scoring"):
            return score(*args, **kwargs)

    def counted_logps(model, input_ids, attention_mask, *args, **kwargs):
        tokens = int(attention_mask.sum())
        costs.add_tokens(forwarded=tokens, backpropagated=tokens if torch.is_grad_enabled() else 0)
        return logps(model, input_ids, attention_mask, *args, **kwargs)

    trainer._generate = counted_generate
    trainer._generate_and_score_completions = scored
    trainer._get_per_token_logps_and_entropies = counted_logps
