"""DeepSpeed ZeRO-2 (hardware=multi_gpu's launch, conf/accelerate/deepspeed_zero2.yaml) on the CPU: DeepSpeed's CPU
accelerator (DS_ACCELERATOR=cpu, gloo and its shared-memory comm op), 2 processes under accelerate's DeepSpeed
plugin, dpo on the tiny Llama. The same config file, changed only where a CPU needs it: 2 processes, use_cpu, no
bf16 mixed precision (this machine's bf16 may be emulated)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from tests.conftest import REPO, tiny_overrides

pytest.importorskip("deepspeed")


@pytest.mark.slow
def test_dpo_under_deepspeed_zero2_on_two_cpu_processes(tmp_path):
    config = yaml.safe_load((REPO / "conf" / "accelerate" / "deepspeed_zero2.yaml").read_text())
    assert config["distributed_type"] == "DEEPSPEED" and config["deepspeed_config"]["zero_stage"] == 2
    config.update(num_processes=2, use_cpu=True, mixed_precision="no")
    (tmp_path / "accelerate.yaml").write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "dpo"
    overrides = tiny_overrides(algo="dpo", hardware="multi_gpu", **{"hardware.device": "cpu",
                               "hardware.dtype": "float32", "hardware.bf16": "false"})  # fmt: skip
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(tmp_path / "accelerate.yaml")]
    done = subprocess.run(
        [*launch, "train.py", *overrides, f"outputs_root={tmp_path / 'outputs'}", f"hydra.run.dir={run_dir}"],
        cwd=REPO, env={**os.environ, "DS_ACCELERATOR": "cpu"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # each process initialised DeepSpeed's communication (its CPU shared-memory all-reduce op)
    assert done.stdout.count("deepspeed_shm_comm_op built successfully") == 2, done.stdout[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["train_steps"] == 4
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert any(t.abs().max() > 0 for name, t in weights.items() if "lora_B" in name)
