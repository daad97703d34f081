"""DPO on a tiny Llama: only LoRA trains; the reference is the base (adapter disabled) or the SFT model
(init_adapter), checked numerically against freshly loaded models; every exposed loss type runs a step."""

import json
from pathlib import Path

import pytest
import torch

from rlhf.algos import dpo
from rlhf.config import HardwareSettings, ModelSettings, from_node
from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from rlhf.modeling.logprobs import preference_logprobs, reference_mode
from rlhf.modeling.models import load_adapter, load_causal_lm, load_tokenizer, model_directory
from rlhf.run.rundir import resolve_adapter
from tests.algos.helpers import make_job
from tests.conftest import compose_train, tiny_overrides


def dpo_cfg(tmp_path, **extra):
    return compose_train(tiny_overrides(algo="dpo", **extra), outputs_root=tmp_path / "outputs")


def settings_of(cfg) -> dpo.Settings:
    return from_node(dpo.Settings, cfg.algo, "algo")


def fresh_model(cfg, adapter: Path | None = None):
    """The base model loaded anew (optionally with a saved adapter on it): an independent reference."""
    model = from_node(ModelSettings, cfg.model, "model")
    hardware = from_node(HardwareSettings, cfg.hardware, "hardware")
    path = model_directory(model)
    tokenizer = load_tokenizer(path, model)
    lm = load_causal_lm(path, model, hardware, tokenizer)
    return tokenizer, (lm if adapter is None else load_adapter(lm, adapter))


def trl_reference_logps(trainer, n: int):
    """TRL's own reference log-probs (chosen [n], rejected [n]) for the first n training pairs."""
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(n)])
    chosen, rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    return chosen.detach(), rejected.detach()


def test_fit_changes_lora_weights_only(tmp_path):
    cfg = dpo_cfg(tmp_path, **{"algo.max_steps": "2"})
    job = make_job(cfg, tmp_path / "run")
    policy = dpo.build(job, settings_of(cfg))
    assert policy.peft_config is not None and policy.ref_model is None  # one copy of the base
    trainer = dpo.make_trainer(job, settings_of(cfg), policy)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 2
    changed = {name for name, p in trainer.model.named_parameters() if not torch.equal(p, before[name])}
    assert any("lora_B" in n for n in changed)
    assert changed and all("lora_" in n for n in changed), sorted(changed)
    assert "ref" not in trainer.model.peft_config  # a fresh adapter: the reference is the adapter disabled


def test_reference_log_probs_are_the_base_with_the_adapter_disabled(tmp_path):
    cfg = dpo_cfg(tmp_path, **{"algo.learning_rate": "0.01", "algo.max_steps": "2"})
    job = make_job(cfg, tmp_path / "run")
    settings = settings_of(cfg)
    trainer = dpo.fit(job, settings, dpo.build(job, settings))
    pairs = job.data.train[:4]

    tokenizer, base = fresh_model(cfg)
    base_chosen, base_rejected = preference_logprobs(
        base, tokenizer, pairs, 4, settings.max_length, settings.max_prompt_length
    )
    trl_chosen, trl_rejected = trl_reference_logps(trainer, 4)
    assert torch.allclose(trl_chosen, base_chosen, atol=1e-3) and torch.allclose(trl_rejected, base_rejected, atol=1e-3)

    with reference_mode(trainer.model):
        ours = preference_logprobs(trainer.model, tokenizer, pairs, 4, settings.max_length, settings.max_prompt_length)
    assert torch.allclose(ours[0], base_chosen, atol=1e-4) and torch.allclose(ours[1], base_rejected, atol=1e-4)
    policy_chosen, _ = preference_logprobs(
        trainer.model, tokenizer, pairs, 4, settings.max_length, settings.max_prompt_length
    )
    assert not torch.allclose(policy_chosen, base_chosen, atol=1e-3)  # the policy did move: the check is not vacuous


def test_our_log_probs_match_trl_logged_log_probs(tmp_path):
    """rlhf.modeling.logprobs tokenizes like TRL: its policy log-probs equal TRL's on the same batch."""
    cfg = dpo_cfg(tmp_path)
    job = make_job(cfg, tmp_path / "run")
    settings = settings_of(cfg)
    trainer = dpo.make_trainer(job, settings, dpo.build(job, settings))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model = trainer.model
    model.eval()
    with torch.no_grad():
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True
        )
    trl_chosen, trl_rejected = out.log_probs.sum(dim=1).chunk(2)
    chosen, rejected = preference_logprobs(
        model, trainer.processing_class, job.data.train[:4], 4, settings.max_length, settings.max_prompt_length
    )
    assert torch.allclose(chosen, trl_chosen, atol=1e-3) and torch.allclose(rejected, trl_rejected, atol=1e-3)


@pytest.mark.parametrize("loss_type", dpo.LOSS_TYPES)
def test_every_exposed_loss_type_runs_a_step(tmp_path, loss_type):
    smoothing = {"exo_pair": "0.001", "robust": "0.1"}.get(loss_type, "0.0")
    cfg = dpo_cfg(
        tmp_path,
        **{
            "algo.loss_type": loss_type,
            "algo.label_smoothing": smoothing,
            "algo.max_steps": "1",
            "algo.batch_size": "2",
            "dataset.n_train": "4",
        },
    )
    job = make_job(cfg, tmp_path / "run")
    settings = settings_of(cfg)
    trainer = dpo.fit(job, settings, dpo.build(job, settings))
    assert trainer.state.global_step == 1
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert losses and all(torch.isfinite(torch.tensor(x)) for x in losses)


def test_loss_types_in_the_yaml_comment_are_the_exposed_ones():
    text = (Path(__file__).resolve().parents[2] / "conf" / "algo" / "dpo.yaml").read_text()
    for loss_type in dpo.LOSS_TYPES:
        assert loss_type in text, loss_type


def test_run_writes_the_run_directory_with_dpo_metrics(tmp_path):
    cfg = dpo_cfg(tmp_path, **{"algo.max_steps": "2", "dataset.n_test": "8"})
    run_dir = tmp_path / "outputs" / "dpo" / "run"
    summary = run_experiment(cfg, run_dir)

    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["algo"] == "dpo"
    for key in ("eval_accuracy", "eval_margin", "train_steps", "wall_time_s", "reference"):
        assert key in on_disk, key
    assert 0.0 <= on_disk["eval_accuracy"] <= 1.0 and summary["eval_accuracy"] == on_disk["eval_accuracy"]
    assert {k for k in on_disk if k.startswith("eval_accuracy/")}  # per family
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "adapter" / "tokenizer_config.json").is_file()
    assert not (run_dir / "adapter" / "ref").exists()
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*logged)
    for key in (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
    ):
        assert key in keys, key
    assert "eval_accuracy" in logged[-1]
    rewards = [json.loads(line) for line in (run_dir / "eval_rewards.jsonl").read_text().splitlines()]
    assert len(rewards) == on_disk["eval_pairs"] == 8
    margin = sum(r["chosen"] - r["rejected"] for r in rewards) / len(rewards)
    assert margin == pytest.approx(on_disk["eval_margin"], abs=1e-5)
    assert (tmp_path / "outputs" / "latest" / "dpo").resolve() == run_dir.resolve()


def test_implicit_reward_metrics_by_hand():
    chosen = dpo.implicit_rewards(0.5, torch.tensor([-10.0, -4.0, -6.0]), torch.tensor([-12.0, -4.0, -5.0]))
    assert chosen.tolist() == [1.0, 0.0, -0.5]


@pytest.mark.parametrize(
    "override, message",
    [
        ("algo.beta=0", r"algo\.beta=0\.0 is out of range: must be > 0"),
        ("algo.beta=-0.1", r"algo\.beta=-0\.1 is out of range"),
        ("algo.loss_type=dpo", r"unknown algo\.loss_type='dpo': valid values are sigmoid, hinge, ipo"),
        (
            "algo.max_prompt_length=256",
            r"algo\.max_prompt_length=256 is out of range: must be >= 1 and < algo\.max_length=256",
        ),
        ("algo.label_smoothing=0.1", r"algo\.label_smoothing=0\.1 has no effect with algo\.loss_type=sigmoid"),
        ("algo.loss_type=exo_pair", r"algo\.label_smoothing=0\.0 is out of range: exo_pair needs > 0"),
    ],
)
def test_bad_settings_name_the_value_and_the_fix(override, message):
    cfg = compose_train(["algo=dpo", override])
    with pytest.raises(ConfigError, match=message):
        settings_of(cfg)


def test_init_adapter_pointing_at_nothing_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"algo\.init_adapter=.*missing: nothing is there; give a run directory"):
        resolve_adapter(str(tmp_path / "missing"), "algo.init_adapter")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"neither a run directory \(summary\.json\) nor an adapter directory"):
        resolve_adapter(str(tmp_path / "empty"), "algo.init_adapter")
    cfg = dpo_cfg(tmp_path, **{"algo.init_adapter": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="nothing is there"):
        run_experiment(cfg, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


# --- SFT -> DPO: the reference is the SFT model --------------------------------------------------


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """A finished tiny SFT run (high learning rate, so its adapter is far from the base)."""
    root = tmp_path_factory.mktemp("sft")
    cfg = compose_train(tiny_overrides(algo="sft", **{"algo.learning_rate": "0.01"}), outputs_root=root / "outputs")
    run_experiment(cfg, root / "outputs" / "sft" / "run")
    return root / "outputs"


def test_init_adapter_resolves_run_dirs_latest_and_plain_adapter_dirs(sft_run):
    adapter = sft_run / "sft" / "run" / "adapter"
    assert resolve_adapter(str(sft_run / "latest" / "sft"), "algo.init_adapter") == adapter.resolve()
    assert resolve_adapter(str(sft_run / "sft" / "run"), "algo.init_adapter") == adapter.resolve()
    assert resolve_adapter(str(adapter), "algo.init_adapter") == adapter
    other = from_node(ModelSettings, compose_train(["model=smollm2_135m"]).model, "model")
    with pytest.raises(
        ConfigError, match="trained on model=tiny_llama, a different base from model=smollm2_135m; make them match"
    ):
        resolve_adapter(str(sft_run / "latest" / "sft"), "algo.init_adapter", other)


def test_with_init_adapter_the_reference_is_the_sft_model(tmp_path, sft_run):
    sft_adapter = sft_run / "sft" / "run" / "adapter"
    cfg = dpo_cfg(
        tmp_path,
        **{"algo.init_adapter": str(sft_run / "latest" / "sft"), "algo.max_steps": "2", "algo.learning_rate": "0.01"},
    )
    job = make_job(cfg, tmp_path / "run")
    settings = settings_of(cfg)
    policy = dpo.build(job, settings)
    assert policy.peft_config is None and policy.ref_model is None  # the SFT adapter on the one base
    trainer = dpo.make_trainer(job, settings, policy)
    assert set(trainer.model.peft_config) == {"default", "ref"}
    ref_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if ".ref." in n}
    trainer.train()
    pairs = job.data.train[:4]

    tokenizer, sft_model = fresh_model(cfg, sft_adapter)
    sft_chosen, sft_rejected = preference_logprobs(
        sft_model, tokenizer, pairs, 4, settings.max_length, settings.max_prompt_length
    )
    _, base = fresh_model(cfg)
    base_chosen, _ = preference_logprobs(base, tokenizer, pairs, 4, settings.max_length, settings.max_prompt_length)
    assert not torch.allclose(sft_chosen, base_chosen, atol=1e-2)  # SFT moved away from the base

    trl_chosen, trl_rejected = trl_reference_logps(trainer, 4)
    assert torch.allclose(trl_chosen, sft_chosen, atol=1e-3) and torch.allclose(trl_rejected, sft_rejected, atol=1e-3)
    with reference_mode(trainer.model):
        ours, _ = preference_logprobs(
            trainer.model, tokenizer, pairs, 4, settings.max_length, settings.max_prompt_length
        )
    assert torch.allclose(ours, sft_chosen, atol=1e-4)
    # the frozen copy never moved; the trained adapter did
    assert all(torch.equal(p, ref_before[n]) for n, p in trainer.model.named_parameters() if ".ref." in n)
    policy_chosen, _ = preference_logprobs(
        trainer.model, tokenizer, pairs, 4, settings.max_length, settings.max_prompt_length
    )
    assert not torch.allclose(policy_chosen, sft_chosen, atol=1e-3)


def test_dpo_run_from_latest_sft_saves_only_the_trained_adapter(tmp_path, sft_run):
    cfg = dpo_cfg(
        tmp_path, **{"algo.init_adapter": str(sft_run / "latest" / "sft"), "algo.max_steps": "2", "dataset.n_test": "8"}
    )
    run_dir = tmp_path / "outputs" / "dpo" / "run"
    summary = run_experiment(cfg, run_dir)
    assert summary["status"] == "finished" and summary["reference"].startswith("init adapter")
    assert summary["init_adapter"] == str((sft_run / "sft" / "run" / "adapter").resolve())
    saved = run_dir / "adapter"
    assert (saved / "adapter_model.safetensors").is_file() and not (saved / "ref").exists()
    # the saved adapter reproduces the trained policy on a fresh base
    rows = [json.loads(line) for line in (run_dir / "eval_rewards.jsonl").read_text().splitlines()]
    tokenizer, reloaded = fresh_model(cfg, saved)
    settings = settings_of(cfg)
    test = make_job(cfg, tmp_path / "x").data.test
    chosen, _ = preference_logprobs(reloaded, tokenizer, test, 8, settings.max_length, settings.max_prompt_length)
    assert torch.allclose(chosen, torch.tensor([r["logp_chosen"] for r in rows]), atol=1e-3)


# --- full fine-tuning and precomputed reference log-probs ----------------------------------------


def test_full_fine_tuning_uses_a_separate_frozen_reference_copy(tmp_path):
    cfg = dpo_cfg(tmp_path, lora="none", **{"algo.max_steps": "2", "algo.learning_rate": "1e-3"})
    job = make_job(cfg, tmp_path / "run")
    settings = settings_of(cfg)
    policy = dpo.build(job, settings)
    assert policy.peft_config is None and policy.ref_model is not None and policy.ref_model is not policy.model
    ref_before = {n: p.detach().clone() for n, p in policy.ref_model.named_parameters()}
    trainer = dpo.fit(job, settings, policy)
    assert trainer.state.global_step == 2
    assert all(torch.equal(p, ref_before[n]) for n, p in policy.ref_model.named_parameters())
    assert any(not torch.equal(p, ref_before[n]) for n, p in trainer.model.named_parameters())


def test_precomputed_reference_log_probs_are_the_base(tmp_path):
    cfg = dpo_cfg(tmp_path, **{"algo.precompute_ref_log_probs": "true", "algo.max_steps": "1", "dataset.n_train": "8"})
    job = make_job(cfg, tmp_path / "run")
    settings = settings_of(cfg)
    trainer = dpo.make_trainer(job, settings, dpo.build(job, settings))
    precomputed = torch.tensor(trainer.train_dataset["ref_chosen_logps"][:4])
    tokenizer, base = fresh_model(cfg)
    base_chosen, _ = preference_logprobs(
        base, tokenizer, job.data.train[:4], 4, settings.max_length, settings.max_prompt_length
    )
    assert torch.allclose(precomputed, base_chosen, atol=1e-3)
    trainer.train()
    assert trainer.state.global_step == 1


def test_full_fine_tuning_from_an_init_adapter_merges_it_into_policy_and_reference(tmp_path, sft_run):
    cfg = dpo_cfg(tmp_path, lora="none", **{"algo.init_adapter": str(sft_run / "latest" / "sft")})
    job = make_job(cfg, tmp_path / "run")
    settings = settings_of(cfg)
    policy = dpo.build(job, settings)
    assert not hasattr(policy.model, "peft_config") and policy.ref_model is not None
    pairs = job.data.train[:4]
    tokenizer, sft_model = fresh_model(cfg, sft_run / "sft" / "run" / "adapter")
    expected, _ = preference_logprobs(sft_model, tokenizer, pairs, 4, settings.max_length, settings.max_prompt_length)
    for model in (policy.model, policy.ref_model):
        got, _ = preference_logprobs(model, tokenizer, pairs, 4, settings.max_length, settings.max_prompt_length)
        assert torch.allclose(got, expected, atol=1e-3)


class _UniformLM(torch.nn.Module):
    """Logits all zero over a vocabulary of 4: every token has log-prob -log 4."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, use_cache=False, logits_to_keep=0):
        logits = torch.zeros(*input_ids.shape, 4)
        return type("Out", (), {"logits": logits[:, -logits_to_keep:] if logits_to_keep else logits})()


def test_completion_log_probs_by_hand():
    from rlhf.modeling.logprobs import completion_logprobs

    prompts = [[1, 2, 3], [1], [1, 2, 3, 1, 2]]
    completions = [[1, 2], [3, 3, 3, 3], [2]]
    logps, counts = completion_logprobs(
        _UniformLM(), prompts, completions, pad_token_id=0, batch_size=2, max_length=None
    )
    log4 = torch.log(torch.tensor(4.0))
    assert counts.tolist() == [2, 4, 1]  # input order, whatever the length-sorted batching did
    assert torch.allclose(logps, -counts * log4)
    # max_length keeps the start: the second sequence (1 + 4 tokens) loses the last completion token
    logps, counts = completion_logprobs(_UniformLM(), prompts, completions, pad_token_id=0, batch_size=8, max_length=4)
    assert counts.tolist() == [1, 3, 0] and torch.allclose(logps, -counts * log4)
