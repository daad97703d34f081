"""The benchmark scripts: their arithmetic (fast), and one tiny end-to-end `make bench` run (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import common, machine, steptimer, trainer_steps
from tests.conftest import REPO, compose_train


def test_spread_and_show():
    stats = common.spread([3.0, 1.0, 2.0, None])
    assert stats == {"min": 1.0, "median": 2.0, "max": 3.0, "n": 3}
    assert common.show(stats) == "2.00 (1.00-3.00)"
    assert common.show(common.spread([1.5])) == "1.50"
    assert common.spread([]) is None and common.show(None) == "-"


def test_ratio_and_verdict():
    assert common.ratio(1.0, 2.0) == 0.5
    assert common.ratio(None, 2.0) is None and common.ratio(1.0, 0) is None
    assert common.verdict(0.5, 0.5) == "0.50x (met, target <= 0.5x)"
    assert common.verdict(1.2, 1.05) == "1.20x (NOT met, target <= 1.05x)"


def test_table_is_markdown():
    assert common.table(["a", "b"], [[1, None]]).splitlines() == ["| a | b |", "|---|---|", "| 1 | - |"]


def test_per_step_skips_warm_up_and_differences_tokens():
    # num_tokens is cumulative: 100 after step 1 (warm-up), then +50 per step.
    record = {"step_s": [9.0, 1.0, 1.2, 0.8], "num_tokens": {"1": 100.0, "2": 150.0, "3": 200.0, "4": 250.0}}
    timed = steptimer.per_step(record, skip=1)
    assert timed["step_s"] == [1.0, 1.2, 0.8]
    assert timed["tokens_per_step"] == 50.0


def test_flops_factor():
    # 6NT for a trained forward + backward; DPO adds the reference forward (2NT) unless precomputed.
    assert trainer_steps.flops_factor("rm", False) == 6
    assert trainer_steps.flops_factor("dpo", False) == 8
    assert trainer_steps.flops_factor("dpo", True) == 6


def test_save_results_merges_sections(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "machine_info", lambda: {"hostname": "test"})
    common.save_results("a", {"x": 1})
    path = common.save_results("b", {"y": 2})
    data = json.loads(path.read_text())
    assert data["a"]["x"] == 1 and data["b"]["y"] == 2 and data["machine"] == {"hostname": "test"}
    assert path.parent == tmp_path and path.name.endswith(".json")


def test_results_file_is_per_boot(tmp_path, monkeypatch):
    # every VM here is "vm": two machines of one day must not share (and overwrite) one machine reading
    boot = tmp_path / "boot_id"
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "BOOT_ID", boot)
    monkeypatch.setattr(common.socket, "gethostname", lambda: "vm")
    boot.write_text("5e5da369-3e61-401e-9b75-eae237a79059\n")
    first = common.results_path()
    boot.write_text("0a1b2c3d-0000-4000-8000-000000000000\n")
    assert first.name.endswith("-vm-5e5da369.json") and common.results_path() != first
    boot.unlink()  # no boot id (not Linux): the hostname alone
    assert common.results_path().name.endswith("-vm.json")


def test_bf16_is_timed_only_with_native_bf16(monkeypatch):
    zen3 = "flags\t\t: fpu sse2 avx2 fma\n"
    zen4 = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
    sapphire_rapids = "flags\t\t: fpu avx2 amx_bf16 amx_tile\n"
    assert [machine.native_bf16(flags) for flags in (zen3, zen4, sapphire_rapids)] == [False, True, True]
    timed = []
    monkeypatch.setattr(common, "machine_info", lambda: {})
    monkeypatch.setattr(machine, "matmul_gflops", lambda dtype, size, repeats: timed.append(dtype) or 1.0)
    monkeypatch.setattr(machine, "native_bf16", lambda: False)
    info = machine.measure(64, 1)
    assert timed == [torch.float32] and info["bf16_matmul_gflops"] is None and info["native_bf16"] is False
    monkeypatch.setattr(machine, "native_bf16", lambda: True)
    timed.clear()
    assert machine.measure(64, 1)["bf16_matmul_gflops"] == 1.0 and timed == [torch.float32, torch.bfloat16]


@pytest.mark.slow
def test_make_bench_at_tiny_scale(tmp_path):
    """The whole `make bench` path on the tiny model: every script runs and writes its section."""
    env = {**os.environ, "RLHF_BENCH_RESULTS": str(tmp_path)}
    command = [sys.executable, "-m", "bench.run_all", "--repeats", "1", "--steps", "2", "--iterations", "2"]
    done = subprocess.run([*command, "debug=tiny"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (results,) = tmp_path.glob("*.json")
    data = json.loads(results.read_text())
    assert data["machine"]["fp32_matmul_gflops"] > 0
    assert set(data["trainer_steps"]["ratios"]) >= {"rm", "dpo", "rm_bf16_vs_fp32", "dpo_bf16_vs_fp32"}
    assert data["ppo_iteration"]["ratios"]["shared_vs_separate"]["peak_rss"] > 0
    assert data["ppo_iteration"]["ratios"]["bf16_vs_fp32"]["time"] > 0
    assert data["ppo_iteration"]["ratios"]["value_on_policy_vs_adapter"]["time"] > 0
    assert "| config |" in done.stdout


def test_online_arms_cost_a_rollout_by_difference_at_equal_episodes():
    from bench.online_arms import STEPS_PER_ROLLOUT, arm_overrides, per_rollout

    # 1 rollout in 70 s, 3 in 110 s: loading and the evaluations cancel, 20 s a rollout
    assert per_rollout({"wall_time_s": 70.0}, {"wall_time_s": 110.0}, (1, 3)) == 20.0
    ppo = arm_overrides("ppo", 3, Path("/rm"), 8, ["model=tiny_llama"])
    grpo = arm_overrides("grpo", 3, Path("/rm"), 8, [])
    assert "algo.iterations=3" in ppo and "algo.save_every=3" in ppo and ppo[-1] == "model=tiny_llama"
    assert f"algo.max_steps={3 * STEPS_PER_ROLLOUT}" in grpo and "algo.reward_model=/rm" in grpo
    # a GRPO / RLOO rollout is as many episodes as a PPO iteration, and STEPS_PER_ROLLOUT is its default length
    cfgs = {arm: compose_train([f"algo={arm}"]).algo for arm in ("ppo", "grpo", "rloo")}
    assert cfgs["grpo"].batch_size == cfgs["rloo"].batch_size == cfgs["ppo"].batch_size
    for arm in ("grpo", "rloo"):
        assert cfgs[arm].num_mini_batches * cfgs[arm].num_iterations == STEPS_PER_ROLLOUT
