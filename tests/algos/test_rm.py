"""Reward model on a tiny Llama: only LoRA and the head train; the saved adapter reproduces the rewards; the judge
trains on the other half of the pairs; long pairs lose leading turns, not the whole pair."""

import json
from pathlib import Path

import pytest
import torch

from rlhf.algos import online_trl, rm
from rlhf.config import HardwareSettings, from_node
from rlhf.data.halves import half_record, select_pairs
from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from rlhf.modeling.models import load_reward_model
from rlhf.modeling.pair_length import pair_length
from rlhf.run.rundir import finished_run, load_run_config
from tests.algos.helpers import make_job
from tests.conftest import compose_train, tiny_overrides
from tests.modeling.test_pair_length import hh_row


def test_fit_changes_lora_and_head_but_not_the_base(tmp_path):
    cfg = compose_train(tiny_overrides(), outputs_root=tmp_path / "outputs")
    job = make_job(cfg, tmp_path / "run")
    tokenizer, model = rm.build(job)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    steps = rm.fit(job, from_node(rm.Settings, cfg.algo, "algo"), tokenizer, model, job.data.train)
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


def hh_files(tmp_path: Path) -> dict[str, str]:
    """A hand-built HH train file of 12 pairs, a third of each kind at algo.max_length=64: one that fits, one with a
    long history (cut), one whose response alone is too long (dropped); and a test file of other prompts."""
    history = ["Tell me the whole history of bread. " * 6, "Bread is at least fourteen thousand years old. " * 6]
    kinds = [
        lambda i: hh_row([f"Is water wet, question {i}?"], "Yes, in everyday terms.", "No."),
        lambda i: hh_row([*history, f"How long should dough {i} rise?"], "About an hour.", "Forever."),
        lambda i: hh_row([f"Write me story {i}."], "Once upon a time there was a loaf. " * 20, "No."),
    ]
    train = [kinds[i % 3](i) for i in range(12)]
    test = [hh_row([f"Is fire hot, question {i}?"], "Yes.", "No.") for i in range(4)]
    files = {}
    for name, rows in (("train", train), ("test", test)):
        files[name] = str(tmp_path / f"{name}.jsonl")
        Path(files[name]).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return files


def test_proxy_and_judge_train_on_disjoint_halves_cut_to_length(tmp_path):
    files = hh_files(tmp_path)
    data_files = f"{{train:{files['train']},test:{files['test']}}}"
    seen, counts = {}, {}
    for pairs in ("auto", "judge_half"):
        cfg = compose_train(
            tiny_overrides(**{"dataset": "hh_rlhf", "dataset.data_files": data_files, "algo.max_length": "64",
                              "algo.pairs": pairs, "dataset.judge_protocol": "true"}),
            outputs_root=tmp_path / "outputs",
        )  # fmt: skip
        job = make_job(cfg, tmp_path / pairs)
        examples, counts[pairs] = rm.training_pairs(job, from_node(rm.Settings, cfg.algo, "algo"))
        seen[pairs] = {ex["prompt"][-1]["content"] for ex in examples}
        assert all(pair_length(job.tokenizer, ex["prompt"], ex) <= 64 for ex in examples)
    assert (
        counts["auto"]["pairs"] == "proxy_half"
    )  # the judge protocol without a gold judge: the other half is the judge's
    assert counts["judge_half"]["pairs"] == "judge_half"
    assert not seen["auto"] & seen["judge_half"]
    # 12 pairs in all, 4 of each kind: every long history is cut, every overlong response dropped, in one half or other
    assert counts["auto"]["pairs_count"] + counts["judge_half"]["pairs_count"] == 12
    assert counts["auto"]["pairs_cut_for_length"] + counts["judge_half"]["pairs_cut_for_length"] == 4
    assert counts["auto"]["pairs_dropped_for_length"] + counts["judge_half"]["pairs_dropped_for_length"] == 4
    assert len(seen["auto"] | seen["judge_half"]) == 8


def test_algo_judge_trains_the_judge_half_and_points_latest_judge_at_it(tmp_path):
    outputs = tmp_path / "outputs"
    run_dir = outputs / "judge" / "run"
    summary = run_experiment(compose_train(tiny_overrides(algo="judge"), outputs_root=outputs), run_dir)
    assert summary["status"] == "finished" and summary["algo"] == "judge"
    on_disk = json.loads((run_dir / "summary.json").read_text())
    job = make_job(compose_train(tiny_overrides(algo="judge"), outputs_root=outputs), tmp_path / "judge_data")
    expected = select_pairs(job.data.train, "judge_half", job.dataset.seed)  # debug=tiny's 32 pairs, by prompt
    assert on_disk["pairs"] == "judge_half" and on_disk["pairs_count"] == len(expected)
    assert on_disk["pairs_sha256"] == half_record(expected, "judge_half", job.dataset.seed)["pairs_sha256"]
    assert (on_disk["pairs_cut_for_length"], on_disk["pairs_dropped_for_length"]) == (0, 0)
    assert on_disk["train_steps"] == 4
    assert (outputs / "latest" / "judge").resolve() == run_dir.resolve()
    assert not (outputs / "latest" / "rm").exists()  # the proxy's pointer is untouched
    # a judge run is a reward model: GRPO / RLOO (and PPO, through the same rundir.REWARD_ALGOS) may train against it
    job = make_job(compose_train(tiny_overrides(algo="grpo"), outputs_root=outputs), tmp_path / "grpo")
    assert online_trl.reward_model_run(job, str(outputs / "latest" / "judge")).run_dir == run_dir.resolve()
