"""Memory by construction: rollouts and evaluations in chunks (same results, bounded passes), float32 heads
and adapters on a bf16 base, and the optimizer hardware.optim names."""

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import get_scheduler

from rlhf.algos.ppo import loop as ppo
from rlhf.algos.ppo.math import make_kl_controller
from rlhf.algos.ppo.optimizer import build_optimizer
from rlhf.algos.ppo.scoring import response_values, score_rollout
from rlhf.errors import ConfigError
from rlhf.modeling.generation import response_logprobs, sample
from rlhf.modeling.held_out import evaluate
from tests.algos.ppo.test_loop import outputs, setup  # noqa: F401 (outputs is a fixture)


def perturbed(roles, seed=0):
    """Roles whose trainable weights differ from the base's (LoRA B starts at zero)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in roles.trainable.values():
            p.add_(0.05 * torch.randn_like(p))
    return roles


def spy_generate(roles, monkeypatch) -> list[tuple[int, int, bool]]:
    """Record (rows, prompt columns, first column real in some row) of every generate call on ``roles``."""
    calls, real = [], roles.generate

    def recorded(input_ids, attention_mask, *args, **kwargs):
        calls.append((input_ids.shape[0], input_ids.shape[1], bool(attention_mask[:, 0].any())))
        return real(input_ids, attention_mask, *args, **kwargs)

    monkeypatch.setattr(roles, "generate", recorded)
    return calls


def test_greedy_rollouts_are_the_same_in_any_chunks(outputs, tmp_path, monkeypatch):  # noqa: F811
    _, job, settings = setup(outputs, tmp_path)
    roles, _ = ppo.build(job, settings)
    perturbed(roles)
    prompts = [ex["prompt"] for ex in job.data.train[:5]]
    calls = spy_generate(roles, monkeypatch)
    whole, *chunked = (
        sample(roles, prompts, settings.sampling, greedy=True, chunk_size=size, with_logprobs=True)
        for size in (None, 2, 4)
    )
    assert [rows for rows, _, _ in calls] == [5, 2, 2, 1, 4, 1]  # never more than a chunk in one call
    assert all(first_real for _, _, first_real in calls)  # each chunk dropped its all-padding prompt columns
    assert min(columns for _, columns, _ in calls) < whole.prompt_ids.shape[1]  # ...which really were there
    for rollout in chunked:
        assert torch.equal(rollout.prompt_ids, whole.prompt_ids) and torch.equal(rollout.responses, whole.responses)
        assert torch.equal(rollout.mask, whole.mask) and torch.equal(rollout.has_eos, whole.has_eos)
        assert rollout.texts == whole.texts
        assert torch.allclose(rollout.logprobs[whole.mask], whole.logprobs[whole.mask], atol=1e-5)
        assert torch.allclose(rollout.entropy[whole.mask], whole.entropy[whole.mask], atol=1e-5)


def test_a_sampled_chunked_rollout_is_reproducible_from_its_seed(outputs, tmp_path):  # noqa: F811
    """Another draw than the unchunked one (the RNG is consumed chunk by chunk), but the same one every time."""
    _, job, settings = setup(outputs, tmp_path)
    roles, _ = ppo.build(job, settings)
    prompts = [ex["prompt"] for ex in job.data.train[:5]]
    rollouts = []
    for _ in range(2):
        torch.manual_seed(7)
        rollouts.append(sample(roles, prompts, settings.sampling, chunk_size=2))
    first, again = rollouts
    assert torch.equal(first.responses, again.responses) and first.texts == again.texts
    assert first.responses.shape[0] == 5 and first.responses.shape[1] <= settings.sampling.max_new_tokens


def test_scores_of_the_same_sequences_do_not_depend_on_the_chunk(outputs, tmp_path):  # noqa: F811
    _, job, settings = setup(outputs, tmp_path)
    roles, _ = ppo.build(job, settings)
    perturbed(roles)
    rollout = sample(roles, [ex["prompt"] for ex in job.data.train[:5]], settings.sampling)
    whole, *chunked = (score_rollout(roles, rollout, settings.sampling.temperature, size, 256) for size in (5, 2, 4))
    for scored in chunked:
        for key in ("logprobs", "ref_logprobs", "entropy", "values", "scores"):
            assert torch.allclose(getattr(scored, key), getattr(whole, key), atol=1e-5), key


def test_training_rollouts_and_held_out_evaluation_run_in_chunks(outputs, tmp_path, monkeypatch):  # noqa: F811
    _, job, settings = setup(outputs, tmp_path, **{"algo.rollout_chunk_size": "3"})
    roles, rm = ppo.build(job, settings)
    assert settings.rollout_chunk_size == 3 and settings.batch_size == 4
    calls, scored = spy_generate(roles, monkeypatch), []
    real_scores = roles.scores
    monkeypatch.setattr(roles, "scores", lambda c, size, length: scored.append(size) or real_scores(c, size, length))
    optimizer = build_optimizer(roles.trainable.values(), "adamw_torch", 1e-4, 1e-5, roles.device)
    scheduler = get_scheduler("constant", optimizer, 0, 10)
    prompts = [ex["prompt"] for ex in job.data.train[:4]]
    metrics, rollout, _ = ppo.ppo_iteration(
        roles, optimizer, scheduler, make_kl_controller(0.05, False, None, None), prompts, settings, 2, 256
    )
    assert [rows for rows, _, _ in calls] == [3, 1] and scored == [3] and len(rollout) == 4
    assert math.isfinite(metrics["loss/policy"])
    calls.clear()
    greedy = [
        evaluate(roles, prompts, settings.sampling, True, size, 256, seed=1, with_gold=True)[0] for size in (3, 4)
    ]
    assert [rows for rows, _, _ in calls] == [3, 1, 4]
    assert greedy[0] == pytest.approx(greedy[1], rel=1e-4, abs=1e-5)  # the same responses, scores and KL


@pytest.mark.parametrize("size", ["0", "-1"])
def test_a_chunk_below_one_names_the_knob_and_the_fix(size):
    from rlhf.config import from_node
    from tests.conftest import compose_train, tiny_overrides

    cfg = compose_train(tiny_overrides(algo="ppo", **{"algo.rollout_chunk_size": size}))
    with pytest.raises(ConfigError) as err:
        from_node(ppo.Settings, cfg.algo, "algo")
    assert str(err.value) == (
        f"algo.rollout_chunk_size={size} is out of range: must be >= 1 prompt per generate() call, "
        "e.g. 16 on CPU (lower it if the rollout runs out of memory)"
    )


# --------------------------------------------------------------------------- float32 heads on a bf16 base


@pytest.mark.parametrize("autocast", ["false", "true"])  # hardware.bf16: a100_80gb has bf16 weights and autocast
@pytest.mark.parametrize("value_model", ["adapter", "policy"])
def test_heads_and_adapters_train_in_float32_on_a_bf16_base(outputs, tmp_path, value_model, autocast):  # noqa: F811
    overrides = {"hardware.dtype": "bfloat16", "hardware.bf16": autocast, "algo.value_model": value_model}
    _, job, settings = setup(outputs, tmp_path, **overrides)
    roles, _ = ppo.build(job, settings)
    model = roles.roles["policy"].model
    assert model.get_base_model().get_input_embeddings().weight.dtype == torch.bfloat16  # the base is bf16
    lora = {n: p for n, p in model.named_parameters() if ".lora_" in n}
    assert lora and all(p.dtype == torch.float32 for p in lora.values())  # PEFT's autocast_adapter_dtype
    assert all(p.dtype == torch.float32 for p in roles.trainable.values())
    assert roles.roles["value"].head.weight.dtype == roles.roles["reward"].head.weight.dtype == torch.float32

    with_logprobs = roles.generation_matches_scoring  # no autocast: keep the sampling log-probs (and values)
    rollout = sample(roles, [ex["prompt"] for ex in job.data.train[:3]], settings.sampling, with_logprobs=with_logprobs)
    old = score_rollout(roles, rollout, settings.sampling.temperature, 3, 256)  # reward head on bf16 states
    assert all(torch.isfinite(t).all() for t in (old.scores, old.values, old.ref_logprobs))
    before = {n: p.detach().clone() for n, p in roles.trainable.items()}
    optimizer = build_optimizer(roles.trainable.values(), "adamw_torch", 1e-5, 1e-5, roles.device)
    rows = torch.arange(3)
    with roles.active("policy"):
        logprobs, _ = response_logprobs(roles, "policy", rollout, rows, settings.sampling.temperature)
        logprobs.masked_fill(~rollout.mask, 0).sum().backward()
    with roles.active("value"):
        values = response_values(roles, rollout, rows)
        assert values.dtype == torch.float32
        (values * rollout.mask).sum().backward()
    optimizer.step()  # one step at the 7B preset's learning rate
    changed = {n for n, p in roles.trainable.items() if not torch.equal(p, before[n])}
    assert "value:head.weight" in changed and any(".lora_B.policy." in n for n in changed)


@pytest.mark.slow
def test_separate_value_model_keeps_its_score_head_float32_on_a_bf16_base(outputs, tmp_path):  # noqa: F811
    _, job, settings = setup(outputs, tmp_path, **{"hardware.dtype": "bfloat16", "algo.share_base": "false"})
    roles, _ = ppo.build(job, settings)
    head = {n: p for n, p in roles.trainable.items() if ".score." in n}
    assert head and all(p.dtype == torch.float32 for p in roles.trainable.values())
    rollout = sample(roles, [ex["prompt"] for ex in job.data.train[:2]], settings.sampling)
    assert response_values(roles, rollout, torch.arange(2)).dtype == torch.float32


# --------------------------------------------------------------------------- hardware.optim


def test_fit_builds_the_optimizer_hardware_optim_names(outputs, tmp_path, monkeypatch):  # noqa: F811
    _, job, settings = setup(outputs, tmp_path, **{"hardware.optim": "adamw_torch_fused"})
    seen = {}

    class Built(Exception):
        pass

    def build(params, optim, learning_rate, adam_eps, device):
        seen.update(optim=optim, learning_rate=learning_rate, adam_eps=adam_eps)
        raise Built

    monkeypatch.setattr(ppo, "build_optimizer", build)
    with pytest.raises(Built):
        ppo.fit(job, settings, SimpleNamespace(trainable={}, device=torch.device("cpu")), rm=None)
    assert seen == {"optim": "adamw_torch_fused", "learning_rate": settings.learning_rate, "adam_eps": 1e-5}


def test_an_unknown_optimizer_fails_before_the_models_load(outputs, tmp_path, monkeypatch):  # noqa: F811
    _, job, settings = setup(outputs, tmp_path, **{"hardware.optim": "adam"})
    monkeypatch.setattr(ppo, "build_roles", lambda *a, **k: pytest.fail("the models were loaded"))
    with pytest.raises(ConfigError, match=r"unknown hardware\.optim='adam'"):
        ppo.build(job, settings)


def test_the_cpu_default_is_one_chunk_per_rollout():
    from tests.conftest import compose_train

    algo = compose_train(["algo=ppo"]).algo
    assert algo.rollout_chunk_size == algo.batch_size == 16  # today's single generate call at the default batch
