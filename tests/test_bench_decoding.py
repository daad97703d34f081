"""bench/decoding.py and bench/machine.py's bandwidth: the arithmetic behind the bandwidth share (fast)."""

import pytest
import torch
from torch import nn

from bench import decoding, machine
from rlhf.modeling.generation import Rollout


def test_the_bandwidth_share_is_bytes_per_step_times_steps_per_second_over_the_peak():
    run = {"seconds": 2.0, "tokens": 300, "steps": 40, "rows": 16}
    out = decoding.summarize(run, weight_bytes_per_step=500_000_000, bandwidth_gbs=50.0)
    assert out["tokens_per_s"] == 150 and out["steps_per_s"] == 20 and out["ms_per_step"] == 50
    assert out["bandwidth_share"] == pytest.approx(20 * 0.5e9 / 50e9)  # 10 GB/s of 50


def test_steps_are_each_chunks_longest_response():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    rollout = Rollout([[]] * 4, None, None, None, mask, None, [""] * 4)
    assert decoding.decoding_steps(rollout, chunk_size=2) == 2 + 3
    assert decoding.decoding_steps(rollout, chunk_size=4) == 3


class TinyLM(nn.Module):
    def __init__(self, tied: bool):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.body = nn.Linear(4, 4, bias=False)
        self.head = nn.Linear(4, 10, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def get_input_embeddings(self):
        return self.embed

    def get_output_embeddings(self):
        return self.head


def test_a_step_reads_the_lm_head_once_and_no_untied_embedding_table():
    assert decoding.weight_bytes(TinyLM(tied=True)) == 4 * (16 + 40)  # body + the shared table, once
    assert decoding.weight_bytes(TinyLM(tied=False)) == 4 * (16 + 40)  # the lookup table is not read whole
    assert decoding.weight_bytes(TinyLM(tied=True).to(torch.bfloat16)) == 2 * (16 + 40)


def test_bandwidth_streams_are_measured_and_the_best_is_the_peak():
    out = machine.bandwidth_gbs(megabytes=8, repeats=2)
    assert set(out) == {"read", "copy", "triad", "memory_gbs"} and all(v > 0 for v in out.values())
    assert out["memory_gbs"] == max(out["read"], out["copy"], out["triad"])
