"""Build a Job from a composed config without going through train.py."""

from pathlib import Path

from rlhf.config import DatasetSettings, HardwareSettings, LoggerSettings, LoraSettings, ModelSettings, from_node
from rlhf.data.preference import load_preference_splits
from rlhf.job import Job
from rlhf.models import load_tokenizer, model_directory
from rlhf.tracking import Tracker


def make_job(cfg, run_dir: Path) -> Job:
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = from_node(DatasetSettings, cfg.dataset, "dataset")
    model = from_node(ModelSettings, cfg.model, "model")
    model_path = model_directory(model)
    return Job(
        model=model,
        model_path=model_path,
        tokenizer=load_tokenizer(model_path, model),
        lora=from_node(LoraSettings, cfg.lora, "lora"),
        hardware=from_node(HardwareSettings, cfg.hardware, "hardware"),
        dataset=dataset,
        data=load_preference_splits(dataset),
        run_dir=run_dir,
        outputs_root=Path(cfg.outputs_root),
        tracker=Tracker(run_dir, from_node(LoggerSettings, cfg.logger, "logger"), config={}, job_type=cfg.algo.name, group="t", tags=[]),
        seed=cfg.seed,
    )
