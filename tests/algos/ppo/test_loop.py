"""PPO on a tiny Llama against a tiny reward model: which weights train, what the roles compute, resume, errors."""

import json
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from rlhf.algos.ppo import checkpoint
from rlhf.algos.ppo import loop as ppo
from rlhf.algos.ppo.loop import prompt_indices
from rlhf.algos.ppo.roles import OFF
from rlhf.algos.ppo.scoring import response_values, score_rollout
from rlhf.config import from_node
from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from rlhf.modeling.generation import micro_batches, response_logprobs, sample
from rlhf.modeling.models import load_causal_lm, load_reward_model
from rlhf.modeling.reward_scoring import score_conversations
from rlhf.run import costs
from tests.algos.helpers import make_job, metric_rows, rm_outputs
from tests.conftest import compose_train, tiny_overrides


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return rm_outputs(tmp_path_factory)


RUN = {"algo.iterations": "4", "algo.save_every": "2"}


@pytest.fixture(scope="module")
def straight_run(outputs, tmp_path_factory):
    """A 4-iteration run through run_experiment, checkpointing every 2 iterations: (run dir, summary)."""
    run_dir = tmp_path_factory.mktemp("straight") / "ppo"
    return run_dir, run_experiment(compose_train(ppo_overrides(**RUN), outputs_root=outputs), run_dir)


def ppo_overrides(**extra: str) -> list[str]:
    """A tiny PPO run (conf/debug/algo/tiny_ppo.yaml): 2 iterations of 4 prompts, 8 new tokens, 4 held-out prompts."""
    return tiny_overrides(algo="ppo", **extra)


def setup(outputs, tmp_path, **extra):
    cfg = compose_train(ppo_overrides(**extra), outputs_root=outputs)
    job = make_job(cfg, tmp_path / "run")
    settings = from_node(ppo.Settings, cfg.algo, "algo")
    return cfg, job, settings


def snapshot(roles):
    model = roles.roles["policy"].model
    params = {f"model:{n}": p.detach().clone() for n, p in model.named_parameters()}
    for role in ("reward", "value"):
        params[f"{role}:head"] = roles.roles[role].head.weight.detach().clone()
    return params


def test_training_changes_policy_and_value_only(outputs, tmp_path):
    _, job, settings = setup(outputs, tmp_path)
    roles, rm = ppo.build(job, settings)
    before = snapshot(roles)
    summary = ppo.fit(job, settings, roles, rm)
    after = snapshot(roles)
    changed = {n for n in before if not torch.equal(before[n], after[n])}

    assert any(".lora_B.policy." in n for n in changed)
    assert any(".lora_B.value." in n for n in changed) and "value:head" in changed
    assert not any(".reward." in n for n in changed) and "reward:head" not in changed
    assert changed <= {n for n in before if ".policy." in n or ".value." in n or n == "value:head"}  # base frozen
    for key in ("rm_score_start", "rm_score_final", "gold_score_start", "gold_score_final", "kl_final"):
        assert isinstance(summary[key], float), key
    assert (job.adapter_dir / "adapter_model.safetensors").is_file()
    assert (job.adapter_dir / "value" / "value_head.safetensors").is_file()
    config = json.loads((job.adapter_dir / "adapter_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM"

    # The reference is the base with every adapter off, bit for bit, although the adapters now differ.
    rollout = sample(roles, [ex["prompt"] for ex in job.data.test[:3]], settings.sampling)
    rows = torch.arange(len(rollout))
    ref, _ = response_logprobs(roles, "reference", rollout, rows, settings.sampling.temperature)
    policy, _ = response_logprobs(roles, "policy", rollout, rows, settings.sampling.temperature)
    base = load_causal_lm(job.model_path, job.model, job.hardware, roles.tokenizer).eval()
    input_ids, attention_mask, p = rollout.joined(rows)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits[
            :, p - 1 : -1
        ]
    expected = (
        torch.log_softmax(logits / settings.sampling.temperature, -1)
        .gather(-1, rollout.responses.unsqueeze(-1))
        .squeeze(-1)
    )
    assert roles.roles["reference"].adapter == OFF
    assert torch.allclose(ref, expected, atol=1e-5)
    assert not torch.allclose(policy, ref, atol=1e-5)


def test_shared_reward_role_equals_the_rm_runs_own_model(outputs, tmp_path):
    _, job, settings = setup(outputs, tmp_path)
    roles, rm = ppo.build(job, settings)
    conversations = [ex["prompt"] + ex["chosen"] for ex in job.data.test[:6]] + [
        ex["prompt"] + ex["rejected"] for ex in job.data.test[:2]
    ]
    shared = roles.scores(conversations, batch_size=3, max_length=256)
    tokenizer, reward = load_reward_model(rm.model, rm.adapter, job.hardware)
    separate = score_conversations(reward, tokenizer, conversations, 3, 256)
    assert shared.shape == (8,)
    assert torch.allclose(shared, separate, atol=1e-5)
    assert shared.std() > 0  # the texts really get different scores
    model = roles.roles["policy"].model  # the value role starts as a trainable copy of the reward role
    params = dict(model.named_parameters())
    value = {n: p for n, p in params.items() if ".value." in n}
    assert value and all(torch.equal(p, params[n.replace(".value.", ".reward.")]) for n, p in value.items())
    assert torch.equal(roles.roles["value"].head.weight, roles.roles["reward"].head.weight)


def test_log_probs_do_not_depend_on_padding_or_batching(outputs, tmp_path):
    """Left padding with position ids from the mask: a row scores the same alone or in any batch, so the
    first PPO ratio is 1 whatever rows share a micro batch."""
    _, job, settings = setup(outputs, tmp_path)
    roles, _ = ppo.build(job, settings)
    with torch.no_grad():
        for p in roles.trainable.values():  # make the policy differ from the base
            p.add_(0.05 * torch.randn_like(p))
    prompts = [ex["prompt"] for ex in job.data.train[:5]]
    rollout = sample(roles, prompts, settings.sampling)
    assert rollout.prompt_mask.float().mean() < 1  # the prompts really are left-padded
    together, _ = response_logprobs(roles, "policy", rollout, torch.arange(5), settings.sampling.temperature)
    for rows in ([0], [3, 1], [4, 2, 0]):
        alone, _ = response_logprobs(roles, "policy", rollout, torch.tensor(rows), settings.sampling.temperature)
        assert torch.allclose(alone, together[rows], atol=1e-5)


def test_micro_batches_by_length_return_every_row_in_input_order(outputs, tmp_path):
    """Micro batches are cut from the rows sorted by length; the scores land back on their own rows."""
    _, job, settings = setup(outputs, tmp_path)
    roles, _ = ppo.build(job, settings)
    rollout = sample(roles, [ex["prompt"] for ex in job.data.train[:5]], settings.sampling)
    lengths = rollout.prompt_mask.sum(1) + rollout.mask.sum(1)
    assert len(set(lengths.tolist())) > 1  # the rows really differ in length
    batches = micro_batches(rollout, torch.tensor([4, 0, 3, 1]), 3)
    assert [len(b) for b in batches] == [3, 1] and sorted(torch.cat(batches).tolist()) == [0, 1, 3, 4]
    assert lengths[torch.cat(batches)].tolist() == sorted(lengths[[4, 0, 3, 1]].tolist())
    one, three = (score_rollout(roles, rollout, settings.sampling.temperature, size, 256) for size in (1, 3))
    for key in ("ref_logprobs", "values"):
        assert torch.allclose(getattr(one, key), getattr(three, key), atol=1e-5), key
    assert torch.allclose(one.scores, three.scores, atol=1e-5)
    conversations = rollout.conversations()
    alone = torch.cat(
        [score_conversations(roles.reward_model, roles.reward_tokenizer, [c], 1, 256) for c in conversations]
    )
    assert torch.allclose(three.scores, alone, atol=1e-5) and three.scores.std() > 0


def test_rollout_masks_and_texts(outputs, tmp_path):
    _, job, settings = setup(outputs, tmp_path, **{"algo.sampling.max_new_tokens": "6"})
    roles, _ = ppo.build(job, settings)
    rollout = sample(roles, [ex["prompt"] for ex in job.data.train[:4]], settings.sampling)
    eos = roles.tokenizer.eos_token_id
    assert rollout.responses.shape[1] <= 6
    lengths = rollout.mask.sum(1)
    for row, n, has_eos in zip(rollout.responses, lengths, rollout.has_eos):
        assert (row[n:] == roles.tokenizer.pad_token_id).all()
        assert bool(has_eos) == bool((row[:n] == eos).any())
    assert [c[-1] for c in rollout.conversations()] == [{"role": "assistant", "content": t} for t in rollout.texts]


def test_prompt_order_is_a_pure_function_of_the_iteration():
    first_pass = [i for it in range(1, 5) for i in prompt_indices(10, 3, it, seed=1)][:10]
    assert sorted(first_pass) == list(range(10))  # every prompt once per pass
    assert prompt_indices(10, 3, 4, seed=1) == prompt_indices(10, 3, 4, seed=1)
    assert prompt_indices(10, 3, 2, seed=1) != prompt_indices(10, 3, 2, seed=2)


def test_run_writes_metrics_samples_and_checkpoint(outputs, straight_run):
    run_dir, summary = straight_run
    assert summary["status"] == "finished" and isinstance(summary["kl_within_bound"], bool)
    rows = metric_rows(run_dir)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    for key in (
        "objective/kl",
        "objective/entropy",
        "objective/rlhf_reward",
        "objective/scores",
        "policy/approxkl",
        "policy/clipfrac",
        "value/clipfrac",
        "value/vpred",
        "loss/policy",
        "loss/value",
        "policy/ratio_mean",
        "policy/ratio_max",
        "response/length",
        "response/eos_rate",
        "perf/tokens_per_s",
        "objective/beta",
        "time/rollout",
        "time/score",
        "time/update",
        "objective/gold_score",
    ):
        assert key in rows[1], key
    assert (
        rows[0]["eval/rm_score"] == summary["rm_score_start"] and rows[4]["eval/rm_score"] == summary["rm_score_final"]
    )
    samples = [json.loads(line) for line in (run_dir / "eval_samples.jsonl").read_text().splitlines()]
    assert [s["when"] for s in samples] == ["start"] * 4 + ["final"] * 4
    assert all(isinstance(s["gold_score"], float) for s in samples)
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000002", "step-000004"]
    assert all(
        (checkpoints / name / "adapter" / "adapter_model.safetensors").is_file()
        for name in ("step-000002", "step-000004")
    )
    assert [p.parent.name for p in checkpoints.glob("*/state.pt")] == ["step-000004"]  # only the newest can resume
    assert checkpoint.latest(run_dir) == checkpoints / "step-000004"
    assert (outputs / "latest" / "ppo").resolve() == run_dir.resolve()


def test_resume_after_a_kill_continues_without_duplicate_steps(outputs, straight_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "ppo"
    real_iteration, calls = ppo.ppo_iteration, []

    def dies_in_iteration_4(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("crashed")  # after step 3 was logged, before its checkpoint (every 2)
        return real_iteration(*args, **kwargs)

    monkeypatch.setattr(ppo, "ppo_iteration", dies_in_iteration_4)
    with pytest.raises(RuntimeError, match="crashed"):
        run_experiment(compose_train(ppo_overrides(**RUN), outputs_root=outputs), run_dir)
    assert [r["step"] for r in metric_rows(run_dir)] == [0, 1, 2, 3]
    assert checkpoint.latest(run_dir).name == "step-000002"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"  # resumable, unlike a finished run
    monkeypatch.setattr(ppo, "ppo_iteration", real_iteration)

    resumed = {**RUN, "resume": str(run_dir)}
    summary = run_experiment(compose_train(ppo_overrides(**resumed), outputs_root=outputs), run_dir)
    rows = metric_rows(run_dir)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert summary["status"] == "finished"
    samples = [json.loads(line)["when"] for line in (run_dir / "eval_samples.jsonl").read_text().splitlines()]
    assert samples == ["start"] * 4 + ["final"] * 4

    # The resumed run is the run that never died: same RNG, weights, optimizer and KL state.
    straight_dir, straight_summary = straight_run
    straight = metric_rows(straight_dir)
    for key in ("objective/scores", "objective/kl", "loss/policy", "loss/value", "response/length"):
        assert [r[key] for r in rows[1:]] == pytest.approx([r[key] for r in straight[1:]], rel=1e-4, abs=1e-6), key
    for key in ("rm_score_start", "rm_score_final", "kl_final"):
        assert summary[key] == pytest.approx(straight_summary[key], rel=1e-4, abs=1e-6), key
    # Its last checkpoint's cost counts from the first step (the crashed process's share carried), as the straight
    # run's; its held-out change pairs the start records it read back with the final ones.
    resumed_cost, straight_cost = (costs.recorded(d / "checkpoints" / "step-000004") for d in (run_dir, straight_dir))
    for key in ("tokens_forwarded", "tokens_backpropagated", "episodes"):
        assert resumed_cost[key] == straight_cost[key], key
    assert summary["rm_score_change"] == pytest.approx(straight_summary["rm_score_change"], rel=1e-4, abs=1e-6)


def test_missing_reward_model_says_to_train_one(tmp_path):
    cfg = compose_train(ppo_overrides(), outputs_root=tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"no reward model at .*latest/rm: run `python train\.py algo=rm` first"):
        run_experiment(cfg, tmp_path / "run")


def test_reward_model_on_another_base_needs_share_base_false(outputs, tmp_path):
    other = tmp_path / "rm-on-smollm2"
    shutil.copytree(outputs / "latest" / "rm", other)
    config = OmegaConf.load(other / ".hydra" / "config.yaml")
    config.model = compose_train(["model=smollm2_135m"]).model  # as if trained on the default base
    OmegaConf.save(config, other / ".hydra" / "config.yaml", resolve=True)
    _, job, settings = setup(outputs, tmp_path, **{"algo.reward_model": str(other)})
    with pytest.raises(
        ConfigError, match=r"trained on model=smollm2_135m, a different base .* set algo\.share_base=false"
    ):
        ppo.build(job, settings)


@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"algo.batch_size": "6", "algo.num_mini_batches": "4"},
            r"algo\.batch_size=6 is not divisible by algo\.num_mini_batches=4",
        ),
        ({"algo.sampling.max_new_tokens": "0"}, r"algo\.sampling\.max_new_tokens=0 is out of range: must be >= 1"),
        ({"algo.kl_estimator": "k2"}, r"unknown algo\.kl_estimator='k2'"),
        ({"algo.value_model": "critic"}, r"unknown algo\.value_model='critic': valid values are adapter, policy"),
        ({"algo.adaptive_kl": "true", "algo.kl_target": "null"}, r"algo\.kl_target=None is out of range"),
    ],
)
def test_bad_settings_name_the_value_and_the_fix(override, message):
    cfg = compose_train(ppo_overrides(**override))
    with pytest.raises(ConfigError, match=message):
        from_node(ppo.Settings, cfg.algo, "algo")


@pytest.mark.slow
def test_separate_models_give_the_same_rewards_and_reference(outputs, tmp_path):
    """share_base=false (a model per role) computes what the shared base computes, before any training."""
    _, job, settings = setup(outputs, tmp_path)
    shared, _ = ppo.build(job, settings)
    _, job2, settings2 = setup(outputs, tmp_path / "b", **{"algo.share_base": "false"})
    separate, _ = ppo.build(job2, settings2)
    conversations = [ex["prompt"] + ex["chosen"] for ex in job.data.test[:4]]
    assert torch.allclose(shared.scores(conversations, 4, 256), separate.scores(conversations, 4, 256), atol=1e-5)
    rollout = sample(shared, [ex["prompt"] for ex in job.data.test[:3]], settings.sampling)
    rows = torch.arange(3)
    for role in ("reference", "policy"):
        a, _ = response_logprobs(shared, role, rollout, rows, 0.7)
        b, _ = response_logprobs(separate, role, rollout, rows, 0.7)
        assert torch.allclose(a, b, atol=1e-5), role
    assert torch.allclose(response_values(shared, rollout, rows), response_values(separate, rollout, rows), atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients(outputs, tmp_path):
    _, job, settings = setup(outputs, tmp_path)
    roles, _ = ppo.build(job, settings)
    rollout = sample(roles, [ex["prompt"] for ex in job.data.train[:3]], settings.sampling)
    rows = torch.arange(3)

    def gradients():
        for p in roles.trainable.values():
            p.grad = None
        with roles.grad_passes():
            with roles.active("policy"):
                logprobs, _ = response_logprobs(roles, "policy", rollout, rows, settings.sampling.temperature)
                (logprobs * rollout.mask).sum().backward()
            with roles.active("value"):
                (response_values(roles, rollout, rows) * rollout.mask).sum().backward()
        return {n: p.grad.clone() for n, p in roles.trainable.items() if p.grad is not None}

    plain = gradients()
    roles.enable_gradient_checkpointing()
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys() and any(".policy." in n for n in plain) and "value:head.weight" in plain
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], rtol=1e-4, atol=1e-6), name
    assert not roles.roles["policy"].model.training  # back in eval mode for generation


def test_bf16_autocast_scores_and_trains_close_to_fp32(outputs, tmp_path):
    """hardware.bf16 (e.g. hardware=cpu_bf16): forwards run under bf16 autocast, fp32 weights and gradients."""
    _, job, settings = setup(outputs, tmp_path, **{"hardware.bf16": "true"})
    roles, _ = ppo.build(job, settings)
    assert roles.autocast_dtype == torch.bfloat16
    rollout = sample(roles, [ex["prompt"] for ex in job.data.train[:3]], settings.sampling)
    rows = torch.arange(3)
    with roles.active("policy"):
        mixed, _ = response_logprobs(roles, "policy", rollout, rows, settings.sampling.temperature)
        dtype = roles.autocast_dtype
        roles.autocast_dtype = None
        full, _ = response_logprobs(roles, "policy", rollout, rows, settings.sampling.temperature)
        roles.autocast_dtype = dtype
        mixed.masked_fill(~rollout.mask, 0).sum().backward()
    assert mixed.dtype == torch.float32 and not torch.equal(mixed, full)  # bf16 matmuls really ran
    assert torch.allclose(mixed[rollout.mask], full[rollout.mask], atol=0.1)
    grads = [p.grad for n, p in roles.trainable.items() if ".policy." in n and p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_sampling_log_probs_equal_a_policy_forward(outputs, tmp_path):
    """The old log-probs kept from generation (no second policy forward) are the ones a forward over the
    rollout gives: KV-cached decoding under left padding scores each token as the full sequence does."""
    _, job, settings = setup(outputs, tmp_path, **{"algo.sampling.temperature": "0.7"})
    roles, _ = ppo.build(job, settings)
    with torch.no_grad():
        for p in roles.trainable.values():  # a policy that differs from the base
            p.add_(0.05 * torch.randn_like(p))
    assert roles.generation_matches_scoring
    rollout = sample(roles, [ex["prompt"] for ex in job.data.train[:5]], settings.sampling, with_logprobs=True)
    rows = torch.arange(len(rollout))
    with torch.no_grad():
        forward, entropy = response_logprobs(
            roles, "policy", rollout, rows, settings.sampling.temperature, with_entropy=True
        )
    mask = rollout.mask
    assert rollout.logprobs.shape == mask.shape and rollout.prompt_mask.float().mean() < 1
    assert torch.allclose(rollout.logprobs[mask], forward[mask], atol=1e-4)
    assert torch.allclose(rollout.entropy[mask], entropy[mask], atol=1e-4)
    scored = score_rollout(roles, rollout, settings.sampling.temperature, chunk_size=2, reward_max_length=256)
    assert torch.equal(scored.logprobs, rollout.logprobs)
