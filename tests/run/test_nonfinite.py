"""Numeric failures: NaN/inf updates are skipped and counted; patience in a row stops the run."""

import math
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from torch import nn
from transformers import Trainer, TrainerCallback, TrainerControl, TrainingArguments, get_scheduler

from rlhf.algos.ppo import loop as ppo
from rlhf.algos.ppo.math import make_kl_controller
from rlhf.errors import NumericError
from rlhf.experiment import run_experiment
from rlhf.run.nonfinite import SKIPPED_UPDATES, NonFiniteCounter, NonFiniteGuard, is_finite
from tests.algos.ppo import test_loop as ppo_tests
from tests.conftest import compose_train, tiny_overrides

NAN = float("nan")


class FakeTracker:
    def __init__(self):
        self.rows = []

    def log(self, metrics, step):
        self.rows.append((step, dict(metrics)))


# --------------------------------------------------------------------------- pure helpers


def test_is_finite():
    assert is_finite(torch.ones(3), 2.0, 7, None, torch.empty(0), torch.arange(4))
    assert is_finite()
    assert not is_finite(torch.tensor([1.0, NAN]))
    assert not is_finite(torch.ones(2), torch.tensor([[0.0], [-math.inf]]))
    assert not is_finite(torch.ones(2), math.inf)
    assert not is_finite(NAN)


def test_counter_counts_total_and_consecutive_skips():
    counter = NonFiniteCounter(3)
    results = [counter.record(ok) for ok in (False, False, True, False, False, False)]
    assert results == [False, False, False, False, False, True]
    assert (counter.skipped, counter.consecutive, counter.exhausted) == (5, 3, True)
    assert counter.record(True) is False and counter.consecutive == 0 and counter.skipped == 5
    with pytest.raises(ValueError):
        NonFiniteCounter(0)


# --------------------------------------------------------------------------- the Trainer callback, called directly


def guarded_step(
    guard, model, optimizer, grad: float, step: int, control: TrainerControl, output_dir="run/checkpoints"
):
    """One Trainer-like update: gradients, the pre-optimizer hook, optimizer.step()."""
    for p in model.parameters():
        p.grad = torch.full_like(p, grad)
    args, state = SimpleNamespace(output_dir=output_dir), SimpleNamespace(global_step=step)
    control = guard.on_pre_optimizer_step(args, state, control, model=model, optimizer=optimizer)
    optimizer.step()
    model.zero_grad()
    return control


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_guard_skips_nan_gradients_and_keeps_finite_ones():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    tracker = FakeTracker()
    guard, control = NonFiniteGuard(tracker, patience=3), TrainerControl()

    before = params_of(model)
    control = guarded_step(guard, model, optimizer, NAN, step=0, control=control)
    assert same(before, params_of(model)) and not optimizer.state  # weights and AdamW moments untouched
    assert tracker.rows == [(1, {SKIPPED_UPDATES: 1})]

    control = guarded_step(guard, model, optimizer, math.inf, step=1, control=control)
    assert same(before, params_of(model)) and guard.counter.consecutive == 2

    control = guarded_step(guard, model, optimizer, 0.5, step=2, control=control)
    assert not same(before, params_of(model)) and guard.counter.consecutive == 0
    assert not control.should_training_stop and not control.should_save
    guard.raise_if_stopped()  # nothing to raise
    assert tracker.rows[-1] == (2, {SKIPPED_UPDATES: 2})  # finite steps log nothing


def test_guard_stops_after_patience_with_a_clear_error():
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    guard, control = NonFiniteGuard(FakeTracker(), patience=3), TrainerControl()
    for step in (0, 1):
        control = guarded_step(guard, model, optimizer, NAN, step, control, output_dir="/runs/x/checkpoints")
        assert not control.should_training_stop
    control = guarded_step(guard, model, optimizer, NAN, 2, control, output_dir="/runs/x/checkpoints")
    assert control.should_training_stop and control.should_save
    with pytest.raises(NumericError) as err:
        guard.raise_if_stopped()
    message = str(err.value)
    for part in ("3 updates in a row", "step 3", "/runs/x/checkpoints", "algo.learning_rate", "max_nonfinite_updates"):
        assert part in message, part


# --------------------------------------------------------------------------- the Trainer callback in a real Trainer


class Regression(nn.Module):
    """A linear regressor whose loss is NaN on the forward calls (1-based) listed in ``nan_calls``."""

    def __init__(self, nan_calls):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.nan_calls, self.calls = set(nan_calls), 0

    def forward(self, x, labels):
        self.calls += 1
        loss = ((self.linear(x).squeeze(-1) - labels) ** 2).mean()
        return {"loss": loss * NAN if self.calls in self.nan_calls else loss}


class Snapshot(TrainerCallback):
    def __init__(self):
        self.after = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after[state.global_step] = params_of(model)


def test_guard_in_a_trainer_stops_with_a_checkpoint_of_the_last_good_state(tmp_path):
    torch.manual_seed(0)
    model = Regression(nan_calls={2, 3, 4})
    data = Dataset.from_dict({"x": [[1.0, 2.0], [0.5, -1.0]] * 8, "labels": [1.0, -1.0] * 8})
    args = TrainingArguments(
        output_dir=str(tmp_path / "checkpoints"),
        max_steps=10,
        per_device_train_batch_size=2,
        learning_rate=0.1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        logging_steps=100,
    )
    guard, snapshot = NonFiniteGuard(FakeTracker(), patience=3), Snapshot()
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[guard, snapshot])
    initial = params_of(model)
    trainer.train()

    assert trainer.state.global_step == 4  # stopped at the third NaN step in a row, not at max_steps
    assert same(snapshot.after[1], params_of(model))  # the weights of the last good step
    assert not same(snapshot.after[1], initial)  # the one finite step did train
    assert (tmp_path / "checkpoints" / "checkpoint-4").is_dir()
    assert guard.counter.skipped == 3
    with pytest.raises(NumericError, match="3 updates in a row .* step 4"):
        guard.raise_if_stopped()


# --------------------------------------------------------------------------- PPO


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """An outputs root holding one finished tiny rm run at latest/rm."""
    root = tmp_path_factory.mktemp("outputs")
    run_experiment(compose_train(tiny_overrides(), outputs_root=root), root / "rm" / "run")
    return root


def ppo_parts(outputs, tmp_path):
    """(settings, roles, the arguments of ppo_iteration after the prompts) as fit() builds them."""
    _, job, settings = ppo_tests.setup(outputs, tmp_path, **{"algo.adaptive_kl": "true"})
    roles, rm = ppo.build(job, settings)
    optimizer = torch.optim.AdamW(
        roles.trainable.values(), lr=settings.learning_rate, eps=settings.adam_eps, weight_decay=0.0
    )
    scheduler = get_scheduler(settings.lr_scheduler_type, optimizer, 0, 100)
    kl_controller = make_kl_controller(settings.kl_coef, settings.adaptive_kl, settings.kl_target, settings.kl_horizon)
    prompts = [ex["prompt"] for ex in job.data.train[: settings.batch_size]]
    reward_max_length = int(rm.config.algo.max_length)
    return (
        settings,
        roles,
        (
            optimizer,
            scheduler,
            kl_controller,
            prompts,
            settings,
            ppo.micro_batch_size(job, settings),
            reward_max_length,
        ),
    )


def trainable(roles):
    return {n: p.detach().clone() for n, p in roles.trainable.items()}


def nan_reward_at(row: int, score_rollout):
    """score_rollout with the reward of one response of every rollout replaced by NaN."""

    def scored_with_nan(*args, **kwargs):
        scored = score_rollout(*args, **kwargs)
        scored.scores[row] = NAN
        return scored

    return scored_with_nan


def test_ppo_skips_an_iteration_with_a_nan_reward(outputs, tmp_path, monkeypatch):
    settings, roles, rest = ppo_parts(outputs, tmp_path)
    optimizer, scheduler, kl_controller = rest[:3]
    real = ppo.score_rollout
    monkeypatch.setattr(ppo, "score_rollout", nan_reward_at(1, real))
    before, beta = trainable(roles), kl_controller.value
    metrics, _, scores = ppo.ppo_iteration(roles, *rest)
    updates = settings.ppo_epochs * settings.num_mini_batches
    assert math.isnan(scores[1])
    assert metrics["nonfinite/iteration_skipped"] == 1 and metrics["nonfinite/skipped_updates"] == updates
    assert all(torch.equal(before[n], p) for n, p in roles.trainable.items())
    assert not optimizer.state and kl_controller.value == beta  # no AdamW moments, no KL controller step
    assert scheduler.last_epoch == updates  # the schedule still advanced
    assert math.isfinite(metrics["objective/scores"])  # the mean of the finite scores

    monkeypatch.setattr(ppo, "score_rollout", real)
    metrics, _, _ = ppo.ppo_iteration(roles, *rest)
    assert metrics["nonfinite/iteration_skipped"] == 0 and metrics["nonfinite/skipped_updates"] == 0
    assert any(not torch.equal(before[n], p) for n, p in roles.trainable.items())
    assert kl_controller.value != beta


def test_ppo_skips_a_minibatch_with_a_nan_loss(outputs, tmp_path, monkeypatch):
    settings, roles, rest = ppo_parts(outputs, tmp_path)
    real, calls = ppo.policy_loss, []

    def nan_once(*args, **kwargs):  # the first micro batch of the first minibatch
        loss, stats = real(*args, **kwargs)
        calls.append(1)
        return (loss * NAN if len(calls) == 1 else loss), stats

    monkeypatch.setattr(ppo, "policy_loss", nan_once)
    before = trainable(roles)
    metrics, _, _ = ppo.ppo_iteration(roles, *rest)
    assert metrics["nonfinite/skipped_updates"] == 1 and metrics["nonfinite/iteration_skipped"] == 0
    assert rest[1].last_epoch == settings.ppo_epochs * settings.num_mini_batches
    assert math.isfinite(metrics["loss/policy"]) and math.isfinite(
        metrics["perf/grad_norm"]
    )  # the skipped one left out
    assert any(not torch.equal(before[n], p) for n, p in roles.trainable.items())


def test_ppo_fit_stops_after_max_nonfinite_updates(outputs, tmp_path, monkeypatch):
    _, job, settings = ppo_tests.setup(outputs, tmp_path, **{"algo.iterations": "5", "algo.save_every": "5"})
    job.max_nonfinite_updates = 2
    roles, rm = ppo.build(job, settings)
    monkeypatch.setattr(ppo, "score_rollout", nan_reward_at(0, ppo.score_rollout))
    with pytest.raises(NumericError, match=r"2 updates in a row .* step 2.*checkpoints"):
        ppo.fit(job, settings, roles, rm)
    assert (job.run_dir / "checkpoints" / "step-000002").is_dir()  # the last good state, to resume from
    rows = [r for r in ppo_tests.metric_rows(job.run_dir) if "nonfinite/iteration_skipped" in r]
    assert [(r["step"], r["nonfinite/skipped_iterations"]) for r in rows] == [(1, 1), (2, 2)]
