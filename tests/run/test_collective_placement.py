"""Every collective input lives where the process group needs it (NCCL: CUDA tensors only).

A real gloo run cannot show a misplaced tensor: gloo takes CPU tensors too. Here one process plays a launch of 2
whose process group needs another device than the one tensors are made on ("meta" stands in for "cuda"): a
stand-in for accelerate's reduce records where each input lies. Every call site of the project is driven once.
The multi-process tests add tests/collective_guard (no collective outside rlhf.run.distributed).
"""

from types import SimpleNamespace

import pytest
import torch

from rlhf.algos.ppo import loop
from rlhf.run import costs, distributed

GROUP_DEVICE = torch.device("meta")


@pytest.fixture
def launch(monkeypatch):
    """A pretend launch of 2 processes whose collectives need GROUP_DEVICE; yields the devices they were sent on."""
    import accelerate.utils

    sent = []

    def reduce(tensor, reduction="sum"):
        sent.append(tensor.device)
        return torch.ones(tensor.shape, dtype=tensor.dtype)  # the sum's values do not matter here

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "_state", lambda: SimpleNamespace(device=GROUP_DEVICE))
    monkeypatch.setattr(accelerate.utils, "reduce", reduce)
    return sent


def test_the_reductions_send_their_input_on_the_group_device_and_answer_where_it_was(launch):
    local = torch.tensor([1.0, 2.0])
    for result in (distributed.sum_over_ranks(local), distributed.max_over_ranks(local)):
        assert result.device == local.device
    distributed.all_ranks(True)
    distributed.any_rank(False)
    assert launch == [GROUP_DEVICE] * 4


def test_gradients_are_summed_on_the_group_device(launch):
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    params[0].grad = torch.ones(3)  # the second has no gradient in this process: zeros are sent for it
    distributed.sum_gradients(params)
    assert launch == [GROUP_DEVICE]
    assert params[1].grad.shape == (2, 2) and params[1].grad.device == torch.device("cpu")


def test_the_ppo_loop_statistics_go_through_the_group_device(launch):
    loop._batch_mean(torch.tensor([0.5, 1.5]))
    loop._whole_batch({"objective/kl": 0.1, "policy/ratio_max": 1.2})
    assert launch and all(device == GROUP_DEVICE for device in launch)


def test_the_launch_cost_counts_go_through_the_group_device(launch):
    costs.sum_counts_over_ranks()
    assert launch == [GROUP_DEVICE]
