import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlhf.config import ModelSettings, from_node
from rlhf.errors import ConfigError
from rlhf.experiment import _save_config as save_config
from rlhf.run.rundir import (
    finished_run,
    load_run_config,
    point_latest,
    remove_temporaries,
    resolve_adapter,
    truncate_jsonl,
    truncate_metrics,
    write_json_atomic,
)
from tests.conftest import compose_train


def make_run(root, name, status="finished", algo="rm"):
    run = root / name
    (run / "adapter").mkdir(parents=True)
    write_json_atomic(run / "summary.json", {"status": status, "algo": algo})
    return run


def test_latest_switches_to_the_newest_run(tmp_path):
    first, second = make_run(tmp_path, "a"), make_run(tmp_path, "b")
    link = point_latest(tmp_path, "rm", first)
    assert link.resolve() == first.resolve()
    point_latest(tmp_path, "rm", second)
    assert link.resolve() == second.resolve()
    assert json.loads((link / "summary.json").read_text())["status"] == "finished"


@pytest.mark.parametrize(
    "status, algo, message",
    [("failed", "rm", "did not finish"), ("finished", "dpo", "is a 'dpo' run, expected an 'rm' run")],
)
def test_finished_run_refuses_unusable_runs(tmp_path, status, algo, message):
    run = make_run(tmp_path, "x", status=status, algo=algo)
    with pytest.raises(ConfigError, match=message):
        finished_run(run, "algo.reward_model", "rm")


def test_finished_run_refuses_a_plain_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"algo\.reward_model=.*not a run directory"):
        finished_run(tmp_path, "algo.reward_model", "rm")


def model_settings(*overrides):
    return from_node(ModelSettings, compose_train(list(overrides)).model, "model")


def test_one_same_base_rule_ignores_only_the_cache(tmp_path):
    tiny = model_settings("model=tiny_llama")
    assert tiny.same_base(model_settings("model=tiny_llama", "model.cache_dir=/elsewhere"))
    assert not tiny.same_base(
        model_settings("model=tiny_llama", "model.tiny.hidden_size=32")
    )  # same name, other weights
    assert not tiny.same_base(model_settings("model=smollm2_135m"))


def test_finished_run_on_another_base_names_both_and_the_fix(tmp_path):
    run = make_run(tmp_path, "rm")
    (run / ".hydra").mkdir()
    OmegaConf.save(compose_train(["model=smollm2_135m"]), run / ".hydra" / "config.yaml", resolve=True)
    assert finished_run(run, "judge", "rm").model.name == "smollm2_135m"
    with pytest.raises(
        ConfigError,
        match=r"judge=.*trained on model=smollm2_135m, a different base from model=tiny_llama; "
        r"retrain it on smollm2_135m",
    ):
        finished_run(run, "judge", "rm", model_settings("model=tiny_llama"), base_fix="retrain it on {run_model}")


def test_resolve_adapter_refuses_reward_model_adapters(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"task_type": "SEQ_CLS"}))
    with pytest.raises(
        ConfigError, match=r"algo\.init_adapter=.*SEQ_CLS adapter \(a reward model\?\), a policy needs a CAUSAL_LM one"
    ):
        resolve_adapter(tmp_path, "algo.init_adapter")


def test_truncate_drops_a_torn_last_line_and_rows_past_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}, {"step": 2, "eval_accuracy": 0.9}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "lo')  # a kill cut the append
    assert truncate_metrics(path, 2, rows=2) == 2  # the torn line, and the row logged after the checkpoint
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:2]
    assert truncate_jsonl(path, lambda row: row["step"] < 2) == 1
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:1]


def test_remove_temporaries_takes_only_what_killed_writes_left(tmp_path):
    (tmp_path / ".hydra").mkdir()
    for name in ("summary.json.tmp", ".hydra/config.yaml.tmp", "adapter.tmp-abc/adapter_model.safetensors"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("half")
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / ".hydra" / "config.yaml").write_text("a: 1")
    assert remove_temporaries(tmp_path) == [".hydra/config.yaml.tmp", "adapter.tmp-abc", "summary.json.tmp"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".hydra", "config.yaml", "summary.json"]


def test_point_latest_removes_the_link_a_killed_switch_left(tmp_path):
    run = tmp_path / "rm" / "run1"
    run.mkdir(parents=True)
    latest = tmp_path / "latest"
    latest.mkdir()
    dead_pid = 2**22 + 1  # above Linux's pid_max default: no such process
    (latest / f".rm.tmp-{dead_pid}").symlink_to("../rm/run1")
    point_latest(tmp_path, "rm", run)
    assert [p.name for p in latest.iterdir()] == ["rm"]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc needed to reset the peak")
def test_the_peak_memory_of_a_run_does_not_carry_an_earlier_runs_peak():
    """A Hydra multirun runs its jobs in one process: each job's peak_rss_mb must be its own."""
    from rlhf.run.rundir import peak_rss_mb, reset_peaks

    buffer = bytearray(256 * 2**20)  # 256 MiB made resident: an earlier job's peak
    buffer[::4096] = b"x" * len(buffer[::4096])
    high = peak_rss_mb()
    del buffer
    reset_peaks()
    assert peak_rss_mb() < high - 200  # the next job starts counting from what is resident now


def test_a_base_that_differs_only_in_overrides_names_them_not_the_option(tmp_path):
    # read "trained on model=tiny_llama, a different base from model=tiny_llama ... add model=tiny_llama"
    run = make_run(tmp_path, "rm")
    (run / ".hydra").mkdir()
    OmegaConf.save(
        compose_train(["debug=tiny", "model.tiny.hidden_size=32"]), run / ".hydra" / "config.yaml", resolve=True
    )
    here = model_settings("model=tiny_llama")
    with pytest.raises(ConfigError) as refused:
        finished_run(run, "policy", "rm", here, base_fix="add model={run_model}")
    line = str(refused.value)
    assert f"model.tiny.hidden_size=32 there, {here.tiny['hidden_size']} here" in line, line
    assert line.endswith("; set model.tiny.hidden_size=32 as that run had") and "add model=" not in line, line


def test_a_saved_config_reloads_to_the_same_values(tmp_path):
    # an escaped interpolation was saved unescaped, and OmegaConf.load turned it into the home directory
    cfg = compose_train(["debug=tiny", r"tags=[\${oc.env:HOME},plain]"])
    assert list(cfg.tags) == ["${oc.env:HOME}", "plain"]
    save_config(cfg, tmp_path, None)
    assert list(load_run_config(tmp_path).tags) == ["${oc.env:HOME}", "plain"]
