"""Build a Job from a composed config without going through train.py (the same builder train.py uses); finished
rm and sft runs to start from."""

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from rlhf.config import HardwareSettings, LoraSettings, ModelSettings, from_node
from rlhf.experiment import run_experiment
from rlhf.modeling.models import add_adapter, load_causal_lm, load_tokenizer, model_directory
from rlhf.run.job import Job, build_job
from rlhf.run.rundir import point_latest
from tests.conftest import compose_train, tiny_overrides


def make_job(cfg, run_dir: Path) -> Job:
    return build_job(cfg, run_dir, job_type=cfg.algo.name, group="tests", tags=[])


def rm_outputs(tmp_path_factory) -> Path:
    """An outputs root holding one finished tiny rm run at latest/rm (what PPO, GRPO and RLOO score with)."""
    root = tmp_path_factory.mktemp("outputs")
    run_experiment(compose_train(tiny_overrides(), outputs_root=root), root / "rm" / "run")
    return root


def metric_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def fake_sft_run(outputs, name: str, seed: int):
    """outputs/sft/<name>: a finished sft run holding a random LoRA adapter (lora_B nonzero); latest/sft -> it."""
    cfg = compose_train(tiny_overrides(algo="sft"), outputs_root=outputs)
    model = from_node(ModelSettings, cfg.model, "model")
    path = model_directory(model)
    lm = load_causal_lm(path, model, from_node(HardwareSettings, cfg.hardware, "hardware"), load_tokenizer(path, model))
    torch.manual_seed(seed)
    peft = add_adapter(lm, from_node(LoraSettings, cfg.lora, "lora"), "CAUSAL_LM")
    with torch.no_grad():
        for param_name, param in peft.named_parameters():
            if "lora_B" in param_name:
                param.normal_(0, 0.02)
    run = outputs / "sft" / name
    peft.save_pretrained(run / "adapter", safe_serialization=True)
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml", resolve=True)
    (run / "summary.json").write_text(json.dumps({"status": "finished", "algo": "sft"}))
    point_latest(outputs, "sft", run)
    return run
