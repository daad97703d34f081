"""Fake run directories for evaluation tests: a saved LoRA adapter, summary.json and a resolved .hydra/config.yaml."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict
from peft import LoraConfig, get_peft_model

from rlhf.config import HardwareSettings, ModelSettings, from_node
from rlhf.modeling.models import load_causal_lm, load_reward_backbone, load_tokenizer, model_directory
from rlhf.run.rundir import ADAPTER, CONFIG, write_json_atomic
from tests.conftest import compose_config, compose_train, tiny_overrides

TARGETS = ["q_proj", "v_proj"]


def compose_evaluate(overrides: list[str] | None = None, outputs_root: Path | None = None) -> DictConfig:
    """conf/evaluate.yaml composed as evaluate.py would."""
    return compose_config("evaluate", overrides, outputs_root)


def tiny_evaluate(outputs_root: Path, **extra: str) -> DictConfig:
    """A shrunk evaluation on the tiny model (debug=tiny): few prompts and pairs, short responses, no W&B."""
    base = {
        "debug": "tiny",
        "dataset.n_train": "8",
        "dataset.n_test": "8",
        "evaluation.n_prompts": "6",
        "evaluation.n_pairs": "6",
        "evaluation.sampling.max_new_tokens": "6",
        "evaluation.bootstrap_samples": "200",
    }
    base.update(extra)
    return compose_evaluate([f"{k}={v}" for k, v in base.items()], outputs_root)


def _write_run(
    run_dir: Path, algo: str, model: str, summary_extra: dict | None = None, algo_extra: dict | None = None
) -> Path:
    cfg = compose_train([f"algo={algo}", f"model={model}", "logger=none"])
    if algo_extra:
        with open_dict(cfg):
            for key, value in algo_extra.items():
                cfg.algo[key] = value
    (run_dir / CONFIG).parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / CONFIG, resolve=True)
    write_json_atomic(
        run_dir / "summary.json", {"status": "finished", "algo": algo, "model": model, **(summary_extra or {})}
    )
    return run_dir


def _tiny():
    cfg = compose_train(tiny_overrides())
    model = from_node(ModelSettings, cfg.model, "model")
    hardware = from_node(HardwareSettings, cfg.hardware, "hardware")
    path = model_directory(model)
    return model, hardware, path, load_tokenizer(path, model)


def save_policy_adapter(out: Path, random_b: bool, seed: int = 0) -> Path:
    """A CausalLM LoRA adapter on the tiny base: B = 0 (the policy equals the base) or random (it differs)."""
    import torch

    model, hardware, path, tokenizer = _tiny()
    torch.manual_seed(seed)
    lm = load_causal_lm(path, model, hardware, tokenizer)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=TARGETS, task_type="CAUSAL_LM", init_lora_weights=not random_b
    )
    peft = get_peft_model(lm, config)
    if random_b:
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
    peft.save_pretrained(out, safe_serialization=True)
    return out


def make_policy_run(
    run_dir: Path,
    algo: str = "dpo",
    random_b: bool = False,
    seed: int = 0,
    model: str = "tiny_llama",
    init_adapter: Path | None = None,
    adapter_from: Path | None = None,
) -> Path:
    """A finished policy run: adapter/ (fresh, random, or a copy of ``adapter_from``), summary.json, config."""
    import shutil

    if adapter_from is not None:
        shutil.copytree(adapter_from, run_dir / ADAPTER)
    else:
        save_policy_adapter(run_dir / ADAPTER, random_b, seed)
    extra = {"init_adapter": str(init_adapter)} if init_adapter is not None else None
    return _write_run(run_dir, algo, model, algo_extra=extra)


def make_rm_run(run_dir: Path, model: str = "tiny_llama", with_weights: bool = True) -> Path:
    """A finished rm run: a SEQ_CLS LoRA adapter with its score head (untrained), summary.json, config."""
    if with_weights:
        import torch

        m, hardware, path, tokenizer = _tiny()
        torch.manual_seed(1)
        backbone = load_reward_backbone(path, m, hardware, tokenizer)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, task_type="SEQ_CLS", modules_to_save=["score"])
        get_peft_model(backbone, config).save_pretrained(run_dir / ADAPTER, safe_serialization=True)
    else:
        (run_dir / ADAPTER).mkdir(parents=True, exist_ok=True)
    return _write_run(run_dir, "rm", model)
