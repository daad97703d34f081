"""Training batches of similar length: the same examples each epoch, far less padding per step.

TRL's collators pad a batch to its longest sequence. With random batches of 8 pairs of the default
synthetic set, 37% of the tokens a step computes are padding; grouping by length cuts that to 14%.
transformers' own ``train_sampling_strategy="group_by_length"`` sorts each pool longest-first and
keeps that order, a length curriculum inside every pool; here the batches are shuffled after
grouping, so the order of steps stays random.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Sampler
from transformers import Trainer

# Batches per sorted pool: 16 keeps 86% of computed tokens real on the default set (a pool of all
# 50 batches: 89%) while each pool is still a random draw of 128 examples.
POOL_BATCHES = 16


class LengthGroupedBatches(Sampler[int]):
    """Example indices in which every ``batch_size`` consecutive ones (one optimizer step) have similar
    lengths: shuffle, cut into pools of ``pool_batches`` batches, sort each pool by length, cut it into
    batches, shuffle the full batches (a short last batch stays last, so later batches stay aligned).

    The order depends only on ``seed`` and the epoch (``set_epoch``, which the Trainer calls), so a
    resumed run skips exactly the batches it had already trained on."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool_batches: int = POOL_BATCHES):
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(f"batch_size and pool_batches must be >= 1, got {batch_size} and {pool_batches}")
        self.lengths, self.batch_size, self.seed, self.pool_batches = list(lengths), batch_size, seed, pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        pool = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, len(order), pool):
            ranked = sorted(order[start : start + pool], key=self.lengths.__getitem__)
            batches += [ranked[i : i + self.batch_size] for i in range(0, len(ranked), self.batch_size)]
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()] + short
        return iter([index for batch in shuffled for index in batch])


def padded_length(example: dict) -> int:
    """Tokens the collator pads ``example`` to: its prompt (DPO's ``prompt_ids``) + the longer of its
    sequences (``chosen_ids`` / ``rejected_ids`` of preference data, ``input_ids`` of SFT)."""
    sides = [len(example[key]) for key in ("chosen_ids", "rejected_ids", "input_ids") if key in example]
    if not sides:
        raise ValueError(f"cannot group by length: no chosen_ids, rejected_ids or input_ids in {sorted(example)}")
    return len(example.get("prompt_ids") or []) + max(sides)


def group_by_length(trainer: Trainer) -> LengthGroupedBatches:
    """Make ``trainer`` draw its training batches from a LengthGroupedBatches over its (tokenized)
    train dataset; one batch = one optimizer step on every device. Returns the sampler."""
    args = trainer.args
    columns = [
        c for c in ("prompt_ids", "chosen_ids", "rejected_ids", "input_ids") if c in trainer.train_dataset.column_names
    ]
    lengths = [padded_length(example) for example in trainer.train_dataset.select_columns(columns)]
    step_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    sampler = LengthGroupedBatches(
        lengths, step_batch, seed=args.data_seed if args.data_seed is not None else args.seed
    )
    trainer._get_train_sampler = lambda train_dataset=None: sampler  # the Trainer's hook for its train sampler
    return sampler
