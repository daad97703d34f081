"""GRPO (TRL's GRPOTrainer) on a tiny Llama against a tiny reward model: the reward is scored as PPO scores it,
TRL's group-normalised advantages of a known reward, the reference, the run directory, resume, the error lines.

The shared machinery (rlhf/algos/online_trl.py) is tested here; tests/algos/test_rloo.py covers what RLOO adds."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rlhf.algos import grpo, online_trl
from rlhf.algos.ppo.math import apply_missing_eos_penalty
from rlhf.algos.ppo.roles import build_roles
from rlhf.config import from_node
from rlhf.data.gold_judge import gold_score_batch
from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from rlhf.modeling.generation import cut_prompts, encode_prompts, response_logprobs, sample
from rlhf.modeling.logprobs import prompt_length
from rlhf.modeling.models import load_adapter, load_causal_lm
from tests.algos.helpers import make_job, metric_rows, rm_outputs
from tests.conftest import compose_train, tiny_overrides

RUN = {"algo.max_steps": "4", "algo.save_every": "2", "algo.keep_checkpoints": "2"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return rm_outputs(tmp_path_factory)


def grpo_overrides(**extra: str) -> list[str]:
    """A tiny GRPO run (conf/debug/algo/tiny_grpo.yaml): 4 rollouts of 2 prompts x 2 completions, 8 new tokens."""
    return tiny_overrides(algo="grpo", **extra)


def setup(outputs, tmp_path, **extra):
    cfg = compose_train(grpo_overrides(**extra), outputs_root=outputs)
    job = make_job(cfg, tmp_path / "run")
    return job, from_node(grpo.Settings, cfg.algo, "algo")


def train_steps(rows) -> list[int]:
    """The steps of the training rows (TRL's per-step logs), each once."""
    return [r["step"] for r in rows if "loss" in r]


@pytest.fixture(scope="module")
def straight_run(outputs, tmp_path_factory):
    """A 4-step run through run_experiment, checkpointing every 2 steps: (run dir, summary)."""
    run_dir = tmp_path_factory.mktemp("straight") / "grpo"
    return run_dir, run_experiment(compose_train(grpo_overrides(**RUN), outputs_root=outputs), run_dir)


class KnownScores:
    """A stand-in reward model: the given scores, in the order the conversations come."""

    def __init__(self, scores):
        self.scores, self.seen = torch.tensor(scores, dtype=torch.float32), []

    def __call__(self, conversations, batch_size=None, max_length=None):
        self.seen.append(conversations)
        return self.scores[: len(conversations)].clone()


def grpo_trainer(job, settings, function, policy=None):
    """GRPOTrainer as train() builds it, with ``function`` as the reward (a fresh adapter unless ``policy``)."""
    policy = policy or online_trl.build_policy(job, None)
    return online_trl.make_trainer(
        job, settings, policy, function, grpo.GRPOTrainer, grpo.GRPOConfig, grpo.algo_args(settings)
    )


def assistant(text):
    return [{"role": "assistant", "content": text}]


# --------------------------------------------------------------------------- reward wiring


def test_reward_is_the_rm_score_less_the_missing_eos_penalty_as_ppo_scores_it(outputs, tmp_path):
    job, settings = setup(outputs, tmp_path)
    rm = online_trl.reward_model_run(job, None)
    reward = online_trl.RewardModel.load(job, rm)
    prompts = [ex["prompt"] for ex in job.data.test[:4]]
    texts = ["The answer is 4.", "I can't help with that, but here is a safe alternative.", "Paris", ""]
    eos = job.tokenizer.eos_token_id
    ids = [job.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    completion_ids = [ids[0] + [eos], ids[1], ids[2] + [eos], ids[3] + [17]]  # rows 1 and 3 were cut, no EOS
    logged = {}
    function = online_trl.RewardFunction(reward, eos, settings.missing_eos_penalty, with_gold=True)
    rewards = function(prompts, [assistant(t) for t in texts], completion_ids, log_metric=logged.__setitem__)

    # PPO's own reward role (share_base: the rm adapter on the policy's base) and PPO's penalty rule
    roles = build_roles(job, rm, share_base=True, init_adapter=None)
    conversations = [p + assistant(t) for p, t in zip(prompts, texts)]
    ppo_scores = roles.scores(conversations, batch_size=3, max_length=int(rm.config.algo.max_length))
    has_eos = torch.tensor([True, False, True, False])
    expected = apply_missing_eos_penalty(ppo_scores.cpu(), has_eos, settings.missing_eos_penalty)
    assert settings.missing_eos_penalty == 1.0 and reward.max_length == 256
    assert rewards == pytest.approx(expected.tolist(), abs=1e-4)
    assert logged["objective/scores"] == pytest.approx(ppo_scores.mean().item(), abs=1e-4)
    assert logged["response/eos_rate"] == 0.5
    assert logged["objective/gold_score"] == pytest.approx(sum(gold_score_batch(prompts, texts)) / 4)


def test_prompts_are_cut_and_rendered_as_ppo_cuts_and_encodes_them(outputs, tmp_path):
    """The prompt column holds each prompt cut to sampling.max_prompt_length by whole turns (generation.cut_prompts:
    the cut of PPO's rollouts, DPO and SFT), and TRL tokenizes it as rlhf/modeling/generation.py encode_prompts."""
    job, _ = setup(outputs, tmp_path)
    originals = [ex["prompt"] for ex in job.data.train]
    longest = max((p for p in originals if len(p) > 1), key=lambda p: prompt_length(job.tokenizer, p))
    limit = prompt_length(job.tokenizer, longest) - 1  # the longest multi-turn prompt loses its first turn(s)
    job, settings = setup(outputs, tmp_path, **{"algo.sampling.max_prompt_length": str(limit)})
    function = online_trl.RewardFunction(KnownScores([0.0] * 8), job.tokenizer.eos_token_id, 1.0, False)
    trainer = grpo_trainer(job, settings, function)
    cut = cut_prompts(job.tokenizer, originals, limit)
    assert trainer.train_dataset["prompt"] == cut
    assert cut[originals.index(longest)] == longest[2:]  # a whole user + assistant exchange dropped
    prompts = cut[:5] + [cut[originals.index(longest)]]
    ours = trainer._tokenize_prompts(prompts)[0]
    ids, mask = encode_prompts(job.tokenizer, prompts, "cpu")
    assert ours == [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    assert max(map(len, ours)) <= limit


@pytest.mark.parametrize("scale_rewards", ["group", "none", "batch"])
def test_advantages_are_group_normalised_rewards(outputs, tmp_path, scale_rewards):
    """A known score per completion, through our reward function (missing-EOS penalty included), gives TRL's
    group-relative advantages: (r - mean of the prompt's group) / (its std + 1e-4) for scale_rewards=group."""
    job, settings = setup(
        outputs,
        tmp_path,
        **{"algo.batch_size": "8", "algo.num_generations": "4", "algo.scale_rewards": scale_rewards},
    )
    known = [1.0, 2.0, 4.0, 8.0, -3.0, 0.5, 0.5, 6.0]
    scorer = KnownScores(known)
    function = online_trl.RewardFunction(scorer, job.tokenizer.eos_token_id, 1.0, with_gold=False)
    trainer = grpo_trainer(job, settings, function)
    prompts = [job.data.train[0]["prompt"]] * 4 + [job.data.train[1]["prompt"]] * 4  # as TRL's sampler groups them
    out = trainer._generate_and_score_completions([{"prompt": p} for p in prompts])

    assert [c[:-1] for c in scorer.seen[0]] == prompts  # the reward model read each full prompt + its completion
    ids, mask = out["completion_ids"], out["completion_mask"].bool()
    last = torch.stack([row[m][-1] for row, m in zip(ids, mask)])
    has_eos = last == job.tokenizer.eos_token_id
    rewards = torch.tensor(known) - 1.0 * (~has_eos).float()
    groups = rewards.view(2, 4)
    centred = (groups - groups.mean(1, keepdim=True)).view(-1)
    if scale_rewards == "group":
        expected = centred / (groups.std(1, unbiased=True).repeat_interleave(4) + 1e-4)
    elif scale_rewards == "batch":
        expected = centred / (rewards.std(unbiased=True) + 1e-4)
    else:
        expected = centred
    assert torch.allclose(out["advantages"], expected, atol=1e-5)


@pytest.mark.parametrize("loss_type", grpo.LOSS_TYPES)
def test_every_exposed_loss_type_runs_a_step(outputs, tmp_path, loss_type):
    job, settings = setup(outputs, tmp_path, **{"algo.loss_type": loss_type, "algo.max_steps": "1"})
    function = online_trl.RewardFunction(KnownScores([1.0, -1.0, 0.5, 2.0]), job.tokenizer.eos_token_id, 1.0, False)
    trainer = grpo_trainer(job, settings, function)
    trainer.train()
    assert trainer.state.global_step == 1
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert losses and all(torch.isfinite(torch.tensor(x)) for x in losses)


def test_loss_types_in_the_yaml_comment_are_the_exposed_ones():
    from tests.conftest import CONF_DIR

    text = (CONF_DIR / "algo" / "grpo.yaml").read_text()
    assert all(loss_type in text for loss_type in grpo.LOSS_TYPES)


# --------------------------------------------------------------------------- the reference and the evaluation


def test_reference_is_the_base_and_the_init_adapter_frozen(outputs, straight_run, tmp_path):
    """The held-out KL's reference: the base with the adapter disabled (fresh adapter), or with init_adapter the
    init policy (a frozen "ref" copy, whatever beta is), checked against freshly loaded models."""
    run_dir, _ = straight_run
    adapter = run_dir / "adapter"
    # beta = 0: TRL computes no reference log-probs and adds no "ref" copy; the evaluation's reference is still it
    for init, beta in ((None, {}), (str(adapter), {}), (str(adapter), {"algo.beta": "0.0"})):
        job, settings = setup(outputs, tmp_path, **({"algo.init_adapter": init} if init else {}), **beta)
        rm = online_trl.reward_model_run(job, None)
        policy = online_trl.build_policy(job, adapter if init else None)
        function = online_trl.RewardFunction(KnownScores([0.0] * 4), job.tokenizer.eos_token_id, 1.0, False)
        trainer = grpo_trainer(job, settings, function, policy)
        view = online_trl.PolicyView(trainer.model, job.tokenizer, online_trl.RewardModel.load(job, rm), False)
        assert ("ref" in trainer.model.peft_config) == (init is not None)
        with torch.no_grad():  # move the trained adapter away from where it started
            for name, p in trainer.model.named_parameters():
                if ".default." in name:
                    p.add_(0.05 * torch.randn_like(p))
        rollout = sample(view, [ex["prompt"] for ex in job.data.test[:3]], settings.sampling)
        rows = torch.arange(len(rollout))
        t = settings.sampling.temperature
        reference, _ = response_logprobs(view, "reference", rollout, rows, t)
        fresh = load_causal_lm(job.model_path, job.model, job.hardware, job.tokenizer)
        fresh = (fresh if init is None else load_adapter(fresh, adapter)).eval()
        input_ids, attention_mask, p = rollout.joined(rows)
        with torch.no_grad():
            logits = fresh(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
            ).logits[:, p - 1 : -1]
        expected = torch.log_softmax(logits / t, -1).gather(-1, rollout.responses.unsqueeze(-1)).squeeze(-1)
        mask = rollout.mask
        assert torch.allclose(reference[mask], expected[mask], atol=1e-5)
        policy_logps, _ = response_logprobs(view, "policy", rollout, rows, t)
        assert not torch.allclose(policy_logps[mask], expected[mask], atol=1e-3)
        if init is not None:
            assert all(not p.requires_grad for n, p in trainer.model.named_parameters() if ".ref." in n)
            assert all(p.requires_grad for n, p in trainer.model.named_parameters() if ".default." in n)


# --------------------------------------------------------------------------- the run


def test_run_writes_the_run_directory(outputs, straight_run):
    run_dir, summary = straight_run
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["algo"] == "grpo"
    for key in ("rm_score", "gold_score", "kl", "length", "eos_rate"):  # PPO's start / final keys
        assert isinstance(on_disk[f"{key}_start"], float) and isinstance(on_disk[f"{key}_final"], float), key
    assert on_disk["kl_start"] == 0.0  # a fresh adapter is the base
    assert (on_disk["train_steps"], on_disk["rollouts"], on_disk["episodes"]) == (4, 4, 16)
    assert on_disk["reference"] == "base, adapter disabled" and isinstance(on_disk["kl_within_bound"], bool)

    rows = metric_rows(run_dir)
    assert train_steps(rows) == [1, 2, 3, 4]
    evaluations = [r for r in rows if "eval/rm_score" in r]  # start and final
    assert [r["step"] for r in evaluations] == [0, 4]
    assert evaluations[0]["eval/rm_score"] == summary["rm_score_start"]
    assert evaluations[1]["eval/rm_score"] == summary["rm_score_final"]
    for key in (
        "reward",
        "rewards/reward_model/mean",
        "objective/scores",
        "objective/gold_score",
        "response/eos_rate",
        "kl",
        "entropy",
        "completions/mean_length",
        "grad_norm",
    ):
        assert all(key in r for r in rows if "loss" in r), key
    samples = [json.loads(line) for line in (run_dir / "eval_samples.jsonl").read_text().splitlines()]
    assert [s["when"] for s in samples] == ["start"] * 4 + ["final"] * 4
    assert all(isinstance(s["gold_score"], float) for s in samples)

    adapter = run_dir / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    assert (adapter / "tokenizer_config.json").is_file() and not (adapter / "ref").exists()
    weights = load_file(adapter / "adapter_model.safetensors")
    assert any("lora_B" in n and w.abs().max() > 0 for n, w in weights.items())  # LoRA starts with B = 0
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (outputs / "latest" / "grpo").resolve() == run_dir.resolve()


def test_resume_after_a_crash_continues_as_the_straight_run(outputs, straight_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "grpo"
    real_call, calls = online_trl.RewardFunction.__call__, []

    def dies_in_rollout_3(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("crashed")  # in step 3, after the checkpoint of step 2
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(online_trl.RewardFunction, "__call__", dies_in_rollout_3)
    with pytest.raises(RuntimeError, match="crashed"):
        run_experiment(compose_train(grpo_overrides(**RUN), outputs_root=outputs), run_dir)
    assert [r["step"] for r in metric_rows(run_dir)] == [0, 1, 2]  # start evaluation, steps 1 and 2
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    monkeypatch.setattr(online_trl.RewardFunction, "__call__", real_call)

    summary = run_experiment(compose_train(grpo_overrides(**RUN, resume=str(run_dir)), outputs_root=outputs), run_dir)
    assert summary["status"] == "finished" and summary["resumed"] is True
    rows = metric_rows(run_dir)
    assert train_steps(rows) == [1, 2, 3, 4]  # steps 3 and 4 once each
    assert [r["step"] for r in rows if "eval/rm_score" in r] == [0, 4]
    samples = [json.loads(line)["when"] for line in (run_dir / "eval_samples.jsonl").read_text().splitlines()]
    assert samples == ["start"] * 4 + ["final"] * 4

    # The same data, RNG and optimizer state as the run that never died: the same rollouts and weights.
    straight_dir, straight_summary = straight_run
    straight = [r for r in metric_rows(straight_dir) if "loss" in r]
    resumed = [r for r in rows if "loss" in r]
    for key in ("loss", "objective/scores", "kl", "completions/mean_length", "grad_norm"):
        assert [r[key] for r in resumed] == pytest.approx([r[key] for r in straight], rel=1e-4, abs=1e-6), key
    for key in ("rm_score_start", "rm_score_final", "kl_final", "gold_score_final"):
        assert summary[key] == pytest.approx(straight_summary[key], rel=1e-4, abs=1e-6), key
    expected, got = (
        load_file(straight_dir / "adapter" / "adapter_model.safetensors"),
        load_file(run_dir / "adapter" / "adapter_model.safetensors"),
    )
    assert expected.keys() == got.keys()
    assert all(torch.allclose(got[n], expected[n], atol=1e-5) for n in expected)


# --------------------------------------------------------------------------- errors


def test_missing_reward_model_says_to_train_one(tmp_path):
    cfg = compose_train(grpo_overrides(), outputs_root=tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"no reward model at .*latest/rm: run `python train\.py algo=rm` first"):
        run_experiment(cfg, tmp_path / "run")


def test_full_fine_tuning_is_a_config_error(outputs, tmp_path):
    cfg = compose_train(grpo_overrides(lora="none"), outputs_root=outputs)
    with pytest.raises(ConfigError, match=r"lora=none: the online arms train a LoRA adapter.*pick lora=r16"):
        run_experiment(cfg, tmp_path / "run")


@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"algo.num_generations": "3"},
            r"algo\.batch_size=4 is not divisible by algo\.num_generations=3: a rollout holds whole groups of 3 "
            r"completions of one prompt; choose a batch size that is a multiple of 3 \(e\.g\. 3\), or a "
            r"num_generations that divides 4",
        ),
        ({"algo.num_generations": "1"}, r"algo\.num_generations=1 is out of range: must be >= 2"),
        (
            {"algo.num_mini_batches": "2", "algo.num_iterations": "2", "algo.save_every": "2"},
            r"algo\.save_every=2 is not a multiple of the 4 optimizer steps of one rollout \(algo\.num_mini_batches=2 "
            r"x algo\.num_iterations=2\).*choose a multiple of 4",
        ),
        (
            {"algo.num_mini_batches": "2", "algo.save_every": "4", "algo.max_steps": "5"},
            r"algo\.max_steps=5 is not a multiple of the 2 optimizer steps of one rollout",
        ),
        ({"algo.num_mini_batches": "3"}, r"algo\.batch_size=4 is not divisible by algo\.num_mini_batches=3"),
        ({"algo.loss_type": "ppo"}, r"unknown algo\.loss_type='ppo': valid values are grpo, dr_grpo, dapo"),
        ({"algo.scale_rewards": "mean"}, r"unknown algo\.scale_rewards='mean': valid values are group, batch, none"),
        ({"algo.sampling.max_new_tokens": "0"}, r"algo\.sampling\.max_new_tokens=0 is out of range: must be >= 1"),
        ({"algo.beta": "-0.1"}, r"algo\.beta=-0\.1 is out of range: must be >= 0"),
    ],
)
def test_bad_settings_name_the_value_and_the_fix(override, message):
    cfg = compose_train(grpo_overrides(**override))
    with pytest.raises(ConfigError, match=message):
        from_node(grpo.Settings, cfg.algo, "algo")


def test_a_minibatch_the_micro_batch_does_not_divide_names_both(outputs, tmp_path):
    job, settings = setup(outputs, tmp_path, **{"hardware.micro_batch_size": "3"})
    with pytest.raises(
        ConfigError,
        match=r"the minibatch \(algo\.batch_size / algo\.num_mini_batches\)=4 is not "
        r"divisible by hardware\.micro_batch_size=3",
    ):
        online_trl.training_args(settings, job)
