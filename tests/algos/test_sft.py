"""SFT on a tiny Llama: the loss covers the response tokens only; only LoRA trains; the run directory is written."""

import json

import pytest
import torch

from rlhf.algos import sft
from rlhf.config import from_node
from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from rlhf.modeling.logprobs import response_logprobs, tokenize_completions, truncate_prompt
from tests.algos.helpers import make_job
from tests.conftest import compose_train, tiny_overrides


def sft_cfg(tmp_path, **extra):
    return compose_train(tiny_overrides(algo="sft", **extra), outputs_root=tmp_path / "outputs")


def settings_of(cfg) -> sft.Settings:
    return from_node(sft.Settings, cfg.algo, "algo")


def sft_trainer(tmp_path):
    """(job, settings, tokenizer, model, trainer) of a tiny SFT run, built but not trained."""
    cfg = sft_cfg(tmp_path)
    job = make_job(cfg, tmp_path / "run")
    settings = settings_of(cfg)
    tokenizer, model = sft.build(job)
    return job, settings, tokenizer, model, sft.make_trainer(job, settings, tokenizer, model)


def test_labels_mask_the_prompt_and_keep_the_response(tmp_path):
    job, settings, tokenizer, model, trainer = sft_trainer(tmp_path)
    examples = job.data.train[:4]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    for row, ex in enumerate(examples):
        prompt = truncate_prompt(tokenizer, ex["prompt"], settings.max_prompt_length)
        prompt_ids, (response_ids,) = tokenize_completions(tokenizer, prompt, [ex["chosen"]])
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        n = len(prompt_ids) + len(response_ids)
        assert ids[:n].tolist() == prompt_ids + response_ids
        assert (labels[: len(prompt_ids)] == -100).all()  # no loss on the prompt
        assert labels[len(prompt_ids) : n].tolist() == response_ids  # loss on every response token
        assert (labels[n:] == -100).all()  # nor on padding
        assert ex["chosen"][0]["content"] in tokenizer.decode(response_ids)


def test_trl_loss_is_the_mean_response_token_nll(tmp_path):
    job, settings, tokenizer, model, trainer = sft_trainer(tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    examples = job.data.train[:4]
    logps, tokens = response_logprobs(
        model,
        tokenizer,
        [ex["prompt"] for ex in examples],
        [ex["chosen"] for ex in examples],
        4,
        settings.max_length,
        settings.max_prompt_length,
    )
    assert loss.item() == pytest.approx(-(logps.sum() / tokens.sum()).item(), rel=1e-4)


def test_fit_changes_lora_weights_only(tmp_path):
    cfg = sft_cfg(tmp_path, **{"algo.max_steps": "2"})
    job = make_job(cfg, tmp_path / "run")
    tokenizer, model = sft.build(job)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert sft.fit(job, settings_of(cfg), tokenizer, model) == 2
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert any("lora_B" in n for n in changed)
    assert changed and all("lora_" in n for n in changed), sorted(changed)


def test_run_writes_the_run_directory_and_lowers_the_response_nll(tmp_path):
    cfg = sft_cfg(tmp_path, **{"algo.learning_rate": "0.01"})
    run_dir = tmp_path / "outputs" / "sft" / "run"
    summary = run_experiment(cfg, run_dir)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["algo"] == "sft"
    assert summary["eval_loss"] == on_disk["eval_loss"] < on_disk["eval_loss_before"]
    assert on_disk["train_steps"] == 4 and on_disk["eval_response_tokens"] > 0
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in row for row in logged) and "eval_loss" in logged[-1]
    assert (tmp_path / "outputs" / "latest" / "sft").resolve() == run_dir.resolve()


def test_prompt_truncation_keeps_the_end_of_the_conversation(tmp_path):
    cfg = sft_cfg(tmp_path)
    job = make_job(cfg, tmp_path / "run")
    tokenizer, _ = sft.build(job)
    from rlhf.modeling.logprobs import prompt_length

    multi = max(job.data.train, key=lambda ex: prompt_length(tokenizer, ex["prompt"]))
    full = prompt_length(tokenizer, multi["prompt"])
    assert len(multi["prompt"]) >= 3
    cut = truncate_prompt(tokenizer, multi["prompt"], full - 1)
    assert cut[-1] == multi["prompt"][-1] and cut[0]["role"] == "user" and len(cut) < len(multi["prompt"])
    assert prompt_length(tokenizer, cut) <= full - 1
    last_only = prompt_length(tokenizer, [multi["prompt"][-1]])
    tight = truncate_prompt(
        tokenizer, multi["prompt"], last_only - 2
    )  # the last turn's text itself is cut at its start
    assert len(tight) == 1 and prompt_length(tokenizer, tight) <= last_only - 2
    assert multi["prompt"][-1]["content"].endswith(tight[0]["content"][-5:])
    assert truncate_prompt(tokenizer, multi["prompt"], full) == multi["prompt"]
    with pytest.raises(ConfigError, match=r"algo\.max_prompt_length=3 is out of range: the chat template alone takes"):
        truncate_prompt(tokenizer, multi["prompt"], 3)


def test_bad_settings_name_the_value_and_the_fix():
    with pytest.raises(
        ConfigError, match=r"algo\.max_prompt_length=300 is out of range: must be >= 1 and < algo\.max_length=256"
    ):
        settings_of(compose_train(["algo=sft", "algo.max_prompt_length=300"]))
    with pytest.raises(ConfigError, match=r"algo\.learning_rate=0\.0 is out of range"):
        settings_of(compose_train(["algo=sft", "algo.learning_rate=0"]))
