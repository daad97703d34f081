"""Reward model on a tiny Llama: only LoRA and the head train; the saved adapter reproduces the rewards."""

import json

import pytest
import torch

from rlhf.algos import rm
from rlhf.config import HardwareSettings, from_node
from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from rlhf.modeling.models import load_reward_model
from rlhf.run.rundir import finished_run, load_run_config
from tests.algos.helpers import make_job
from tests.conftest import compose_train, tiny_overrides


def test_fit_changes_lora_and_head_but_not_the_base(tmp_path):
    cfg = compose_train(tiny_overrides(), outputs_root=tmp_path / "outputs")
    job = make_job(cfg, tmp_path / "run")
    tokenizer, model = rm.build(job)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    steps = rm.fit(job, from_node(rm.Settings, cfg.algo, "algo"), tokenizer, model)
    assert steps == 4
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert any("lora_B" in n for n in changed) and any("score" in n for n in changed)
    assert not any("lora_" not in n and "score" not in n for n in changed)


def test_run_writes_the_run_directory_and_reload_reproduces_rewards(tmp_path):
    cfg = compose_train(tiny_overrides(), outputs_root=tmp_path / "outputs")
    run_dir = tmp_path / "outputs" / "rm" / "run"
    summary = run_experiment(cfg, run_dir)

    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["algo"] == "rm"
    for key in ("eval_accuracy", "eval_margin", "wall_time_s", "peak_rss_mb", "train_rows", "test_rows"):
        assert key in on_disk, key
    assert any(k.startswith("eval_accuracy/") for k in on_disk)  # per family
    assert summary["eval_accuracy"] == on_disk["eval_accuracy"]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert load_run_config(run_dir).model.name == "tiny_llama"  # resolved config saved
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps and steps == sorted(steps)
    assert (tmp_path / "outputs" / "latest" / "rm").resolve() == run_dir.resolve()

    logged = [json.loads(line) for line in (run_dir / "eval_rewards.jsonl").read_text().splitlines()]
    hardware = from_node(HardwareSettings, cfg.hardware, "hardware")
    tokenizer, reward = load_reward_model(finished_run(run_dir, "test").model, run_dir / "adapter", hardware)
    chosen, rejected, _ = rm.evaluate_pairs(reward, tokenizer, make_job(cfg, tmp_path / "x").data.test, 8, 256)
    assert torch.allclose(chosen, torch.tensor([r["chosen"] for r in logged]), atol=1e-5)
    assert torch.allclose(rejected, torch.tensor([r["rejected"] for r in logged]), atol=1e-5)


def test_existing_run_directory_is_never_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text('{"status": "finished"}')
    with pytest.raises(ConfigError, match="already holds a run"):
        run_experiment(compose_train(tiny_overrides(), outputs_root=tmp_path), run_dir)
    assert json.loads((run_dir / "summary.json").read_text()) == {"status": "finished"}
