"""The phase timer and counters (rlhf/run/costs.py): self-time nesting, exceptions, totals, the decorator."""

import pytest
import torch

from rlhf.run import costs


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


def test_an_inner_phase_is_not_counted_in_the_outer_one(clock):
    acc = costs.Costs(clock=clock)
    with acc.phase("training"):  # 0 .. 10
        clock.now = 2
        with acc.phase("checkpoint"):  # 2 .. 5
            clock.now = 5
        clock.now = 6
        with acc.phase("checkpoint"):  # 6 .. 7
            clock.now = 7
        clock.now = 10
    assert acc.seconds == {"training": 6.0, "checkpoint": 4.0}  # 10 s of wall time, counted once


def test_a_phase_nested_in_its_own_name_counts_its_time_once(clock):
    acc = costs.Costs(clock=clock)
    with acc.phase("load_model"):
        clock.now = 1
        with acc.phase("load_model"):
            clock.now = 4
        clock.now = 5
    assert acc.seconds == {"load_model": 5.0}


def test_a_phase_that_raises_keeps_its_time_and_closes(clock):
    acc = costs.Costs(clock=clock)
    with acc.phase("update"):
        clock.now = 1
        with pytest.raises(RuntimeError):
            with acc.phase("scoring"):
                clock.now = 3.5
                raise RuntimeError("boom")
        clock.now = 4
    assert acc.seconds == {"update": 1.5, "scoring": 2.5}
    assert not acc._open  # nothing left open


def test_a_recorded_interval_comes_out_of_the_open_phase(clock):
    acc = costs.Costs(clock=clock)
    with acc.phase("training"):
        clock.now = 10
        acc.record("checkpoint", 3.0)  # timed by a Trainer callback inside training
        acc.record("evaluation", 1.5)
    acc.record("checkpoint", 2.0)  # outside every phase: just added
    assert acc.seconds == {"training": 5.5, "checkpoint": 5.0, "evaluation": 1.5}


def test_totals_list_phases_in_first_opened_order_with_the_rest_as_other(clock):
    acc = costs.Costs(clock=clock)
    with acc.phase("setup"):
        clock.now = 1.004
    with acc.phase("training"):
        with acc.phase("checkpoint"):
            clock.now = 3
        clock.now = 7
    acc.add_tokens(forwarded=100, backpropagated=60)
    acc.add_tokens(forwarded=5)
    acc.add_episodes(4)
    acc.add_episodes(2)
    totals = acc.totals(wall_seconds=10.0)
    assert list(totals["phase_seconds"]) == ["setup", "training", "checkpoint", "other"]
    assert totals["phase_seconds"] == {"setup": 1.0, "training": 4.0, "checkpoint": 2.0, "other": 3.0}
    assert (totals["tokens_forwarded"], totals["tokens_backpropagated"], totals["episodes"]) == (105, 60, 6)
    assert acc.totals(wall_seconds=6.9)["phase_seconds"]["other"] == 0.0  # never negative


def test_the_module_functions_and_decorator_use_each_runs_fresh_accumulator(clock):
    @costs.phase("load_model")  # made once, like a decorated function at import time
    def load(seconds):
        clock.now += seconds

    first = costs.reset()
    first.clock = clock
    load(2.0)
    costs.add_tokens(forwarded=3, backpropagated=1)
    second = costs.reset()
    second.clock = clock
    load(0.5)
    with costs.phase("training"):
        clock.now += 1.0
        costs.record("checkpoint", 0.25)
    costs.add_episodes(7)
    assert first.seconds == {"load_model": 2.0} and first.tokens_forwarded == 3
    assert second.seconds == {"load_model": 0.5, "training": 0.75, "checkpoint": 0.25}
    assert (second.tokens_forwarded, second.episodes) == (0, 7) and costs.current() is second
    costs.sum_counts_over_ranks()  # one process: nothing to sum
    assert (second.tokens_forwarded, second.episodes) == (0, 7)


def test_counts_are_summed_over_the_launchs_processes(monkeypatch):
    acc = costs.reset()
    acc.add_tokens(forwarded=10, backpropagated=4)
    acc.add_episodes(3)
    monkeypatch.setattr(costs.distributed, "world_size", lambda: 2)
    monkeypatch.setattr(costs.distributed, "sum_over_ranks", lambda t: t + torch.tensor([7.0, 5.0, 1.0]))  # rank 1's
    costs.sum_counts_over_ranks()
    assert (acc.tokens_forwarded, acc.tokens_backpropagated, acc.episodes) == (17, 9, 4)


def test_a_snapshot_inside_open_phases_counts_them_as_closing_would(clock):
    acc = costs.Costs(clock=clock)
    with acc.phase("training"):  # 0 .. 10, a checkpoint saved at 8 inside 6 .. 9
        clock.now = 6
        acc.add_tokens(forwarded=30, backpropagated=10)
        with acc.phase("checkpoint"):
            clock.now = 8
            now = acc.so_far()
            clock.now = 9
        clock.now = 10
    assert now["phase_seconds"]["training"] == 6.0 and now["phase_seconds"]["checkpoint"] == 2.0
    assert now["wall_time_s"] == 8.0 and now["tokens_forwarded"] == 30
    assert costs.training_seconds(now) == 6.0
    assert acc.seconds == {"training": 7.0, "checkpoint": 3.0}  # nothing changed by the snapshot


def test_a_resumed_run_carries_its_checkpoints_cost(tmp_path, clock):
    saved = {"phase_seconds": {"training": 5.0}, "tokens_forwarded": 100, "tokens_backpropagated": 40,
             "episodes": 8, "wall_time_s": 7.0}  # fmt: skip
    costs.write(tmp_path, saved)
    acc = costs.reset()
    acc.clock, acc.started = clock, 0.0
    costs.carry(tmp_path)
    with acc.phase("training"):
        clock.now = 3
        acc.add_tokens(forwarded=10, backpropagated=4)
        acc.add_episodes(2)
        later = costs.snapshot()
    assert later["phase_seconds"]["training"] == 8.0 and later["wall_time_s"] == 10.0
    assert (later["tokens_forwarded"], later["tokens_backpropagated"], later["episodes"]) == (110, 44, 10)
    assert costs.training_flops(later, parameters=1000) == 2.0 * 1000 * (110 + 44)
    costs.reset()
