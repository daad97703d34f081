"""The GPU profile's QLoRA path (hardware=gpu_24gb: 4-bit NF4 double-quant, bf16 compute,
prepare_model_for_kbit_training, gradient checkpointing, paged 8-bit AdamW) run on the CPU with
hardware.device=cpu, for every algorithm, on the tiny Llama: the same code a 24 GB GPU runs, less CUDA.

One 4-bit reward model and judge (a module fixture) serve every test that needs them; each run is a few steps."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from safetensors.torch import load_file

from rlhf.config import HardwareSettings, ModelSettings, from_node
from rlhf.errors import ConfigError
from rlhf.evaluation.run import evaluate
from rlhf.experiment import run_experiment
from rlhf.modeling.models import load_causal_lm, load_tokenizer, model_directory
from rlhf.plan import memory as m
from tests.conftest import REPO, compose_train, tiny_overrides
from tests.evaluation.helpers import tiny_evaluate

QLORA = {"hardware": "gpu_24gb", "hardware.device": "cpu"}


def qlora(**extra: str) -> list[str]:
    """debug=tiny under the GPU profile on the CPU, shrunk further: 2 optimizer steps (PPO: its 2 iterations) and
    8 held-out rows."""
    steps = {} if extra.get("algo") == "ppo" else {"algo.max_steps": "2", "algo.save_every": "2"}
    return tiny_overrides(**QLORA, **{"dataset.n_test": "8", **steps, **extra})


def train(outputs: Path, name: str, **extra: str) -> tuple[Path, dict]:
    run_dir = outputs / extra.get("algo", "rm") / name
    summary = run_experiment(compose_train(qlora(**extra), outputs_root=outputs), run_dir)
    assert summary["status"] == "finished", summary
    return run_dir, summary


def trained(run_dir: Path, weights: str = "adapter/adapter_model.safetensors") -> bool:
    """Whether training moved the adapter: PEFT starts every lora_B at zero."""
    tensors = load_file(run_dir / weights)
    return any(t.abs().max() > 0 for name, t in tensors.items() if "lora_B" in name)


def bnb_optimizer_state(path: Path) -> bool:
    """Whether a saved optimizer state is bitsandbytes' (paged_adamw_8bit): its per-parameter quant-state record.
    bitsandbytes keeps 32-bit moments for tensors under 4,096 elements (min_8bit_size), which every LoRA matrix
    of the tiny model is, so the record, not a uint8 moment, is what shows the optimizer here."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("optimizer", state)  # PPO's state.pt holds the optimizer's state dict under "optimizer"
    return any("__bnb_optimizer_quant_state__" in s for s in state["state"].values())


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """An outputs root holding a 4-bit rm run (latest/rm) and a 4-bit judge run (latest/judge)."""
    root = tmp_path_factory.mktemp("qlora")
    train(root, "run")
    train(root, "run", algo="judge")
    return root


def test_the_gpu_profile_loads_its_4bit_path_on_the_cpu():
    cfg = compose_train(qlora())
    model, hardware = (
        from_node(ModelSettings, cfg.model, "model"),
        from_node(HardwareSettings, cfg.hardware, "hardware"),
    )
    assert hardware.name == "gpu_24gb" and not hardware.cuda and hardware.optim == "paged_adamw_8bit"
    path = model_directory(model)
    lm = load_causal_lm(path, model, hardware, load_tokenizer(path, model))
    q = lm.model.layers[0].self_attn.q_proj
    assert isinstance(q, bnb.nn.Linear4bit) and q.weight.dtype == torch.uint8 and q.weight.device.type == "cpu"
    assert q.weight.quant_state.quant_type == "nf4" and q.weight.quant_state.nested  # double quantization
    assert q.compute_dtype == torch.bfloat16
    # prepare_model_for_kbit_training: the non-quantized weights upcast to fp32, checkpointing on
    assert lm.model.norm.weight.dtype == torch.float32 and lm.model.embed_tokens.weight.dtype == torch.float32
    assert lm.is_gradient_checkpointing


@pytest.mark.parametrize("autocast", [False, True], ids=["no-autocast", "bf16-autocast"])
def test_a_4bit_models_kv_cache_is_fp32_as_the_planner_counts(autocast):
    """prepare_model_for_kbit_training upcasts the norms and embeddings, and Linear4bit returns its input's dtype,
    so K and V are fp32 with or without autocast; the planner counts 4 bytes a KV element under 4-bit."""
    cfg = compose_train(qlora())
    model, hardware = (
        from_node(ModelSettings, cfg.model, "model"),
        from_node(HardwareSettings, cfg.hardware, "hardware"),
    )
    path = model_directory(model)
    lm = load_causal_lm(path, model, hardware, load_tokenizer(path, model))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        cache = lm(ids, use_cache=True).past_key_values
    assert cache.layers[0].keys.dtype == cache.layers[0].values.dtype == torch.float32
    assert m.Precision.of(hardware).gen == 4


def test_rm_and_judge_train_with_the_paged_8bit_optimizer(outputs):
    for algo in ("rm", "judge"):
        run_dir = outputs / algo / "run"
        assert trained(run_dir) and "score" in " ".join(load_file(run_dir / "adapter/adapter_model.safetensors"))
        (optimizer,) = (run_dir / "checkpoints").glob("checkpoint-*/optimizer.pt")
        assert bnb_optimizer_state(optimizer), algo
    summary = json.loads((outputs / "rm" / "run" / "summary.json").read_text())
    assert summary["precision"]["why"] == "hardware=gpu_24gb as configured, on the CPU (hardware.device=cpu)"


def test_sft_then_dpo_from_it_and_rm_from_it_refused(outputs):
    sft, _ = train(outputs, "sft", algo="sft")
    assert trained(sft)
    dpo, summary = train(outputs, "dpo", algo="dpo")
    assert trained(dpo) and summary["reference"] == "base, adapter disabled"
    # DPO from the SFT adapter continues it (no merge): TRL's frozen 'ref' copy on the same 4-bit base
    dpo_sft, summary = train(outputs, "dpo-sft", algo="dpo", **{"algo.init_adapter": str(sft)})
    assert summary["reference"] == "init adapter, frozen 'ref' copy"
    # the reward model from SFT would merge the adapter into the 4-bit base: refused, naming the alternatives
    cfg = compose_train(qlora(**{"algo.init_adapter": str(sft)}), outputs_root=outputs)
    with pytest.raises(ConfigError, match=r"cannot merge .* into a 4-bit base.*algo.init_adapter=null.*load_in_4bit"):
        run_experiment(cfg, outputs / "rm" / "from-sft")


@pytest.mark.parametrize(
    "extra",
    [
        {"algo.sentinel_prompts": "2"},  # four roles on one 4-bit base; the sentinel (gold judge) at each checkpoint
        {"algo.share_base": "false"},  # a 4-bit model per role
    ],
    ids=["shared-base-sentinel", "share_base-false"],
)
def test_ppo(outputs, extra):
    run_dir, summary = train(outputs, "ppo-" + "-".join(extra), algo="ppo", **extra)
    assert summary["iterations"] == 2 and trained(run_dir)
    assert trained(run_dir, "adapter/value/adapter_model.safetensors") or extra.get("algo.share_base") == "false"
    assert bnb_optimizer_state(run_dir / "checkpoints" / "step-000002" / "state.pt")
    if "algo.sentinel_prompts" in extra:
        assert len((run_dir / "sentinel.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_online(outputs, algo):
    run_dir, _ = train(outputs, algo, algo=algo)
    assert trained(run_dir)


def test_evaluate_policies_and_judge_on_the_4bit_base(outputs, tmp_path):
    if not (outputs / "dpo" / "dpo").is_dir() or not list((outputs / "ppo").glob("ppo-*")):
        pytest.skip("needs the dpo and ppo runs of this module")
    ppo = sorted((outputs / "ppo").glob("ppo-*"))[0]
    cfg = tiny_evaluate(
        tmp_path,
        **QLORA,
        judge=str(outputs / "judge" / "run"),
        **{"policies.dpo": str(outputs / "dpo" / "dpo"), "policies.ppo": str(ppo)},
    )
    res = evaluate(cfg, tmp_path / "run")
    assert set(res["policies"]) >= {"base", "dpo", "ppo"}, res.keys()


# --------------------------------------------------------------------------- resume after SIGKILL (subprocesses)


def _run(args: list[str], module: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *module, *args], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["dpo", "ppo"])
def test_sigkill_then_resume_under_4bit(outputs, algo, tmp_path):
    run_dir = tmp_path / algo
    extra = {"algo.iterations": "4"} if algo == "ppo" else {"algo.max_steps": "4"}
    args = [*qlora(algo=algo, **extra), f"outputs_root={outputs}", f"hydra.run.dir={run_dir}"]
    killed = _run(args, ["tests/signal_at_step.py", "SIGKILL", "3"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (run_dir / "summary.json").exists()
    resumed = _run([f"resume={run_dir}"], ["train.py"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["resumed"] is True and trained(run_dir)
