"""hardware=auto and native bf16 (rlhf/config.py): the detection on faked CPUs, what auto composes to, the precision
a run records, and a tiny PPO and DPO run on bf16 weights (hardware=cpu_bf16) whose adapters stay float32."""

import dataclasses
import json
import logging

import pytest
import torch
from safetensors import safe_open

import rlhf.config
from rlhf.config import HardwareSettings, from_node, native_bf16, native_bf16_reason
from rlhf.experiment import run_experiment
from tests.algos.helpers import rm_outputs
from tests.conftest import compose_train, tiny_overrides

# /proc/cpuinfo of the fleet's three CPU kinds, cut to what matters
ZEN3 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"


@pytest.fixture
def cpu(tmp_path, monkeypatch):
    """Fake this machine's CPU: ``cpu(text)`` writes a /proc/cpuinfo the detection reads; no CUDA GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def fake(text: str | None) -> None:
        path = tmp_path / "cpuinfo"
        if text is None:
            path.unlink(missing_ok=True)  # not Linux
        else:
            path.write_text(text)
        monkeypatch.setattr(rlhf.config, "CPUINFO", path)

    return fake


def test_native_bf16_is_read_from_the_cpu_flags(cpu):
    for text, native in ((ZEN3, False), (ZEN4, True), (SAPPHIRE_RAPIDS, True), (None, False)):
        cpu(text)
        assert native_bf16() is native, text
    cpu(SAPPHIRE_RAPIDS)
    assert native_bf16_reason() == "the CPU has amx_bf16"
    assert native_bf16_reason(ZEN4) == "the CPU has avx512_bf16" and native_bf16_reason(ZEN3) is None


def hardware(*overrides: str) -> HardwareSettings:
    return from_node(HardwareSettings, compose_train(list(overrides)).hardware, "hardware")


def without_name(settings: HardwareSettings) -> dict:
    return {k: v for k, v in dataclasses.asdict(settings).items() if k != "name"}


@pytest.mark.parametrize(("text", "picked"), [(ZEN4, "cpu_bf16"), (SAPPHIRE_RAPIDS, "cpu_bf16"), (ZEN3, "cpu")])
def test_auto_is_cpu_bf16_where_bf16_is_native_and_cpu_elsewhere(cpu, text, picked):
    cpu(text)
    auto = hardware("hardware=auto")
    assert auto.name == "auto" and without_name(auto) == without_name(hardware(f"hardware={picked}"))
    assert without_name(hardware("hardware=auto", "hardware.bf16=false")) == {**without_name(auto), "bf16": False}


def test_the_precision_a_run_records_says_what_auto_picked_and_why(cpu, caplog, monkeypatch):
    monkeypatch.setattr(rlhf.config, "_auto_logged", set())  # as in a fresh process
    cpu(ZEN4)
    with caplog.at_level(logging.INFO, logger="rlhf.config"):
        auto = hardware("hardware=auto")
        hardware("hardware=auto")  # read again: logged once
    assert auto.precision() == {
        "hardware": "auto", "dtype": "bfloat16", "autocast": "bfloat16", "why": "hardware=auto: the CPU has avx512_bf16"
    }  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hardware=auto")]
    assert lines == ["hardware=auto: cpu_bf16's settings (bf16 weights and autocast), as the CPU has avx512_bf16"]
    cpu(ZEN3)
    assert hardware("hardware=auto").precision()["why"].startswith("hardware=auto: no native bf16 matmul")
    assert hardware("hardware=cpu").precision() == {
        "hardware": "cpu", "dtype": "float32", "autocast": None, "why": "hardware=cpu as configured"
    }  # fmt: skip


def adapter_tensors(adapter_dir) -> dict[str, torch.Tensor]:
    """Every tensor saved under ``adapter_dir`` (the policy adapter, and PPO's value head in value/)."""
    tensors = {}
    for file in adapter_dir.rglob("*.safetensors"):
        with safe_open(str(file), "pt") as handle:
            tensors |= {f"{file.name}:{key}": handle.get_tensor(key) for key in handle.keys()}
    return tensors


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return rm_outputs(tmp_path_factory)


@pytest.mark.parametrize("algo", ["ppo", "dpo"])
def test_a_run_on_bf16_weights_trains_and_saves_float32_adapters(outputs, tmp_path, algo):
    run_dir = tmp_path / algo
    summary = run_experiment(
        compose_train(tiny_overrides(algo=algo, hardware="cpu_bf16"), outputs_root=outputs), run_dir
    )
    assert summary["status"] == "finished", summary.get("error")
    assert summary["precision"]["dtype"] == "bfloat16" and summary["precision"]["autocast"] == "bfloat16"
    assert json.loads((run_dir / "summary.json").read_text())["precision"] == summary["precision"]
    saved = adapter_tensors(run_dir / "adapter")
    assert saved and {t.dtype for t in saved.values()} == {torch.float32}  # LoRA (and PPO's value head) in fp32
    trained = [name for name, t in saved.items() if "lora_B" in name and t.abs().sum() > 0]
    assert trained  # LoRA B starts at zero: the run trained it
