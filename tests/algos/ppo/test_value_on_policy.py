"""algo.value_model=policy: the value head on the policy's hidden states (one trunk pass for both losses)."""

import pytest
import torch
from safetensors.torch import load_file

from rlhf.algos.ppo import checkpoint
from rlhf.algos.ppo import loop as ppo
from rlhf.algos.ppo.math import compute_gae, policy_loss, value_loss
from rlhf.algos.ppo.roles import VALUE_HEAD
from rlhf.algos.ppo.scoring import response_values, score_rollout
from rlhf.errors import ConfigError
from rlhf.modeling.generation import response_logprobs, sample
from tests.algos.ppo.test_loop import outputs, setup, snapshot  # noqa: F401 (outputs is a fixture)

ON_POLICY = {"algo.value_model": "policy"}


def perturbed_roles(outputs, tmp_path, **extra):  # noqa: F811
    """Roles with value_model=policy whose policy adapter differs from the base (LoRA B starts at zero)."""
    _, job, settings = setup(outputs, tmp_path, **ON_POLICY, **extra)
    roles, rm = ppo.build(job, settings)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in roles.trainable.values():
            p.add_(0.05 * torch.randn_like(p))
    return roles, job, settings, rm


def test_value_head_on_policy_trains_the_policy_adapter_and_the_head_only(outputs, tmp_path):  # noqa: F811
    _, job, settings = setup(outputs, tmp_path, **ON_POLICY)
    roles, rm = ppo.build(job, settings)
    model = roles.roles["policy"].model
    assert roles.value_on_policy and roles.roles["value"].model is model
    assert not any(".value." in n for n, _ in model.named_parameters())  # no value adapter was loaded
    assert torch.equal(
        roles.roles["value"].head.weight, roles.roles["reward"].head.weight
    )  # initialised from the rm head
    assert set(roles.trainable) == {n for n in roles.trainable if n.startswith("policy:")} | {"value:head.weight"}

    before = snapshot(roles)
    summary = ppo.fit(job, settings, roles, rm)
    changed = {n for n in before if not torch.equal(before[n], snapshot(roles)[n])}
    assert any(".lora_B.policy." in n for n in changed) and "value:head" in changed
    assert changed <= {n for n in before if ".policy." in n or n == "value:head"}  # base and reward frozen
    assert summary["value_model"] == "policy"
    saved = load_file(str(job.adapter_dir / "value" / VALUE_HEAD))["weight"]
    assert torch.equal(saved, roles.roles["value"].head.weight.detach())
    assert not (job.adapter_dir / "value" / "adapter_model.safetensors").exists()


def test_one_pass_gives_the_gradients_of_two(outputs, tmp_path):  # noqa: F811
    """pg_loss + vf_coef * vf_loss through one trunk pass = the policy and value losses backpropagated apart."""
    roles, job, settings, _ = perturbed_roles(outputs, tmp_path)
    rollout = sample(roles, [ex["prompt"] for ex in job.data.train[:3]], settings.sampling, with_logprobs=True)
    old = score_rollout(roles, rollout, settings.sampling.temperature, 3, 256)
    with torch.no_grad():  # the update then starts from other weights than the rollout's: ratios != 1
        for p in roles.trainable.values():
            p.add_(0.02 * torch.randn_like(p))
    rewards = torch.zeros_like(old.values)
    rewards[:, 0] = torch.tensor([1.0, -0.5, 0.3])
    advantages, returns = compute_gae(rewards, old.values, rollout.mask, 1.0, 0.95)
    rows = torch.arange(3)

    def grads():
        out = {n: p.grad.clone() for n, p in roles.trainable.items()}
        for p in roles.trainable.values():
            p.grad = None
        return out

    stats, _ = ppo._policy_and_value_backward(
        roles, rollout, old, advantages, returns, settings, rows, rollout.mask[rows].sum().item()
    )
    one_pass = grads()
    with roles.active("policy"):
        logprobs, _ = response_logprobs(roles, "policy", rollout, rows, settings.sampling.temperature)
        pg_loss, _ = policy_loss(logprobs, old.logprobs, advantages, rollout.mask, settings.cliprange)
        pg_loss.backward()
        vf_loss, _ = value_loss(
            response_values(roles, rollout, rows), old.values, returns, rollout.mask, settings.cliprange_value
        )
        (settings.vf_coef * vf_loss).backward()
    two_passes = grads()
    assert stats["loss/policy"] == pytest.approx(pg_loss.item(), abs=1e-6) and stats["loss/value"] == pytest.approx(
        vf_loss.item(), abs=1e-6
    )
    assert one_pass["value:head.weight"].abs().sum() > 0 and any(
        g.abs().sum() > 0 for n, g in one_pass.items() if ".policy." in n
    )
    for name in two_passes:
        assert torch.allclose(one_pass[name], two_passes[name], rtol=1e-4, atol=1e-7), name


def test_old_values_come_from_generation_and_equal_a_forward(outputs, tmp_path):  # noqa: F811
    roles, job, settings, _ = perturbed_roles(outputs, tmp_path)
    rollout = sample(roles, [ex["prompt"] for ex in job.data.train[:5]], settings.sampling, with_logprobs=True)
    mask = rollout.mask
    assert rollout.values is not None and rollout.values.shape == mask.shape and rollout.prompt_mask.float().mean() < 1
    with torch.no_grad():
        forward = response_values(roles, rollout, torch.arange(len(rollout)))
    assert forward[mask].std() > 0
    assert torch.allclose(rollout.values[mask], forward[mask], atol=1e-4)
    scored = score_rollout(roles, rollout, settings.sampling.temperature, chunk_size=2, reward_max_length=256)
    assert torch.equal(scored.values, rollout.values)


@pytest.mark.slow
def test_separate_models_put_the_value_head_on_the_policy_too(outputs, tmp_path):  # noqa: F811
    """share_base=false with value_model=policy loads no value model and values what the shared base does."""
    _, job, settings = setup(outputs, tmp_path, **ON_POLICY)
    shared, _ = ppo.build(job, settings)
    _, job2, settings2 = setup(outputs, tmp_path / "b", **ON_POLICY, **{"algo.share_base": "false"})
    separate, _ = ppo.build(job2, settings2)
    assert separate.value_on_policy and separate.roles["value"].model is separate.roles["policy"].model
    assert torch.equal(separate.roles["value"].head.weight, shared.roles["value"].head.weight)
    rollout = sample(shared, [ex["prompt"] for ex in job.data.test[:3]], settings.sampling)
    rows = torch.arange(3)
    assert torch.allclose(response_values(shared, rollout, rows), response_values(separate, rollout, rows), atol=1e-5)


def test_resuming_with_the_other_value_model_names_it(outputs, tmp_path):  # noqa: F811
    roles, _, settings, _ = perturbed_roles(outputs, tmp_path)
    optimizer = torch.optim.AdamW(roles.trainable.values(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    controller = ppo.make_kl_controller(0.05, False, None, None)
    saved = checkpoint.save(
        tmp_path / "run", 1, roles, optimizer, scheduler, controller, {}, checkpoint.launch_rng_states()
    )
    _, job, settings = setup(outputs, tmp_path / "adapter")  # value_model=adapter
    other, _ = ppo.build(job, settings)
    optimizer = torch.optim.AdamW(other.trainable.values(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    with pytest.raises(
        ConfigError, match=r"other trainable weights .* share_base and value_model the run started with"
    ):
        checkpoint.restore(saved, other, optimizer, scheduler, controller, seed=0)
