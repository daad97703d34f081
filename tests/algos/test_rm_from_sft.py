"""A reward model that starts from an SFT policy (algo=rm algo.init_adapter=<sft run>, N+'s setup): the SFT adapter
is merged into the classifier's backbone, recorded in summary.json, merged again by every loader (reward, PPO's
value copy, judges), refused when it is gone, and refused by PPO's shared base. The "sft run" is a random LoRA
adapter (helpers.fake_sft_run), so no SFT trains."""

import json
import shutil

import pytest
import torch

from rlhf.algos import rm
from rlhf.algos.ppo import loop as ppo
from rlhf.config import HardwareSettings, ModelSettings, from_node
from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from rlhf.modeling.fingerprints import adapter_fingerprint
from rlhf.modeling.models import (
    load_adapter,
    load_causal_lm,
    load_reward_backbone,
    load_reward_model,
    load_reward_run,
    load_tokenizer,
    merge_adapter,
    model_directory,
)
from rlhf.modeling.reward_scoring import score_conversations
from rlhf.run.rundir import finished_run
from tests.algos.helpers import fake_sft_run, make_job
from tests.conftest import compose_train, tiny_overrides


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """An outputs root with a fake sft run and an rm run trained from it (latest/rm)."""
    root = tmp_path_factory.mktemp("outputs")
    sft = fake_sft_run(root, "sft", seed=3)
    cfg = compose_train(tiny_overrides(**{"algo.init_adapter": str(sft)}), outputs_root=root)
    run_experiment(cfg, root / "rm" / "run")
    return root


def hardware_and_model(cfg):
    return from_node(HardwareSettings, cfg.hardware, "hardware"), from_node(ModelSettings, cfg.model, "model")


def conversations(cfg, tmp_path, n=4):
    return [ex["prompt"] + ex["chosen"] for ex in make_job(cfg, tmp_path / "data").data.test[:n]]


def test_merged_classifier_backbone_computes_what_the_policy_with_its_adapter_computes(outputs):
    cfg = compose_train(tiny_overrides(), outputs_root=outputs)
    hardware, model = hardware_and_model(cfg)
    path = model_directory(model)
    tokenizer = load_tokenizer(path, model)
    adapter = outputs / "sft" / "sft" / "adapter"
    policy = load_adapter(load_causal_lm(path, model, hardware, tokenizer), adapter).eval()
    merged = merge_adapter(load_reward_backbone(path, model, hardware, tokenizer), adapter).eval()
    plain = load_reward_backbone(path, model, hardware, tokenizer).eval()
    ids = torch.randint(0, tokenizer.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = policy(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        got = merged(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        before = plain(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(before, want, atol=1e-3)  # the adapter moved the states: the test can fail


def test_rm_records_its_start_and_every_loader_merges_it(outputs, tmp_path):
    run = finished_run(outputs / "latest" / "rm", "test")
    sft_adapter = (outputs / "sft" / "sft" / "adapter").resolve()
    assert run.summary["init_adapter"] == {"path": str(sft_adapter), "sha256": adapter_fingerprint(sft_adapter)}

    cfg = compose_train(tiny_overrides(), outputs_root=outputs)
    hardware, _ = hardware_and_model(cfg)
    logged = [json.loads(line) for line in (run.run_dir / "eval_rewards.jsonl").read_text().splitlines()]
    tokenizer, reward = load_reward_run(run, hardware)
    chosen, _, _ = rm.evaluate_pairs(reward, tokenizer, make_job(cfg, tmp_path / "x").data.test, 8, 256)
    assert torch.allclose(chosen, torch.tensor([r["chosen"] for r in logged]), atol=1e-5)
    _, on_base = load_reward_model(run.model, run.adapter, hardware)  # the same LoRA without its start
    unmerged, _, _ = rm.evaluate_pairs(on_base, tokenizer, make_job(cfg, tmp_path / "y").data.test, 8, 256)
    assert not torch.allclose(unmerged, chosen, atol=1e-3)


def test_a_changed_start_adapter_stops_the_reward_model_from_loading(outputs, tmp_path):
    moved = tmp_path / "outputs"
    shutil.copytree(outputs, moved, symlinks=True)
    rm_run = moved / "rm" / "run"
    summary = json.loads((rm_run / "summary.json").read_text())
    summary["init_adapter"]["path"] = str(moved / "sft" / "sft" / "adapter")  # the copy's own sft adapter
    (rm_run / "summary.json").write_text(json.dumps(summary))
    hardware, _ = hardware_and_model(compose_train(tiny_overrides(), outputs_root=moved))
    load_reward_run(finished_run(rm_run, "test"), hardware)  # the same weights at another path load

    weights = moved / "sft" / "sft" / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    with pytest.raises(ConfigError, match=r"no longer there with those weights; .* train the reward model again"):
        load_reward_run(finished_run(rm_run, "test"), hardware)


def test_ppo_needs_separate_models_and_its_value_copy_starts_at_the_reward_model(outputs, tmp_path):
    shared = compose_train(tiny_overrides(algo="ppo"), outputs_root=outputs)
    job = make_job(shared, tmp_path / "shared")
    with pytest.raises(ConfigError, match=r"started from the adapter .* merged into its base.* algo\.share_base=false"):
        ppo.build(job, from_node(ppo.Settings, shared.algo, "algo"))

    cfg = compose_train(tiny_overrides(algo="ppo", **{"algo.share_base": "false"}), outputs_root=outputs)
    job = make_job(cfg, tmp_path / "separate")
    roles, _ = ppo.build(job, from_node(ppo.Settings, cfg.algo, "algo"))
    texts = conversations(cfg, tmp_path)
    value_model = roles.roles["value"].model
    reward = score_conversations(roles.reward_model, roles.reward_tokenizer, texts, 4, 256)
    value = score_conversations(value_model, roles.tokenizer, texts, 4, 256)
    assert torch.allclose(value, reward, atol=1e-5)
