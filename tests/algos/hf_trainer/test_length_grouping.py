"""Length-grouped training batches: every example once per epoch, similar lengths within a step,
random step order, the same order after a resume; installed on TRL's trainers."""

import random

import pytest
import torch

from rlhf.algos import dpo
from rlhf.algos.hf_trainer.length_grouping import LengthGroupedBatches, padded_length
from rlhf.config import from_node
from tests.algos.helpers import make_job
from tests.conftest import compose_train, tiny_overrides


def batches_of(sampler: LengthGroupedBatches) -> list[list[int]]:
    order = list(sampler)
    return [order[i : i + sampler.batch_size] for i in range(0, len(order), sampler.batch_size)]


def padded_tokens(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


_RNG = random.Random(0)
LENGTHS = [_RNG.randint(10, 200) for _ in range(203)]  # 25 full batches of 8 and one of 3


def test_every_example_once_and_the_short_batch_last():
    sampler = LengthGroupedBatches(LENGTHS, batch_size=8, seed=0, pool_batches=4)
    assert sorted(sampler) == list(range(len(LENGTHS))) and len(sampler) == len(LENGTHS)
    batches = batches_of(sampler)
    assert [len(b) for b in batches] == [8] * 25 + [3]


def test_batches_of_a_pool_are_runs_of_the_sorted_lengths():
    # One pool holding every example: no example outside a batch lies strictly inside its length range.
    sampler = LengthGroupedBatches(LENGTHS, batch_size=8, seed=0, pool_batches=100)
    for batch in batches_of(sampler)[:-1]:
        low, high = min(LENGTHS[i] for i in batch), max(LENGTHS[i] for i in batch)
        assert not [i for i, n in enumerate(LENGTHS) if i not in batch and low < n < high]


def test_grouping_computes_fewer_padded_tokens_than_random_batches():
    grouped = batches_of(LengthGroupedBatches(LENGTHS, batch_size=8, seed=0))
    shuffled = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [shuffled[i : i + 8] for i in range(0, len(shuffled), 8)]
    assert padded_tokens(grouped, LENGTHS) < 0.8 * padded_tokens(random_batches, LENGTHS)


def test_step_order_is_shuffled_not_a_length_curriculum():
    maxima = [
        max(LENGTHS[i] for i in b) for b in batches_of(LengthGroupedBatches(LENGTHS, 8, seed=0, pool_batches=100))[:-1]
    ]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


def test_order_is_a_function_of_seed_and_epoch():
    a, b = LengthGroupedBatches(LENGTHS, 8, seed=3), LengthGroupedBatches(LENGTHS, 8, seed=3)
    torch.manual_seed(123)  # the global RNG (restored differently on resume) must not matter
    first = list(a)
    torch.manual_seed(456)
    assert list(b) == first
    b.set_epoch(1)
    assert list(b) != first
    assert list(LengthGroupedBatches(LENGTHS, 8, seed=4)) != first


def test_padded_length_of_each_trainers_columns():
    assert padded_length({"chosen_ids": [1] * 30, "rejected_ids": [1] * 41}) == 41  # rm: full sequences
    assert padded_length({"prompt_ids": [1] * 10, "chosen_ids": [1] * 5, "rejected_ids": [1] * 7}) == 17  # DPO
    assert padded_length({"input_ids": [1] * 12}) == 12  # SFT
    with pytest.raises(ValueError, match="no chosen_ids, rejected_ids or input_ids"):
        padded_length({"text": "hi"})


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="batch_size and pool_batches must be >= 1"):
        LengthGroupedBatches([1, 2], batch_size=0, seed=0)


def test_dpo_trainer_draws_length_grouped_steps(tmp_path):
    cfg = compose_train(
        tiny_overrides(algo="dpo", **{"algo.batch_size": "4", "dataset.n_train": "64"}), outputs_root=tmp_path / "o"
    )
    settings = from_node(dpo.Settings, cfg.algo, "algo")
    assert settings.group_by_length  # the default
    job = make_job(cfg, tmp_path / "run")
    trainer = dpo.make_trainer(job, settings, dpo.build(job, settings))
    loader = trainer.get_train_dataloader()
    assert isinstance(loader.batch_sampler.sampler, LengthGroupedBatches)
    lengths = [padded_length(ex) for ex in trainer.train_dataset]
    widths = [batch["input_ids"].shape[1] for batch in loader]
    random_order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    random_widths = [max(lengths[i] for i in random_order[k : k + 4]) for k in range(0, len(lengths), 4)]
    assert sum(widths) < sum(random_widths)  # the collator pads each step to less
