"""What every algorithm (and evaluate.py) receives, and the one place it is built from a composed config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerBase

from rlhf.config import DatasetSettings, HardwareSettings, LoggerSettings, LoraSettings, ModelSettings, from_node
from rlhf.data.preference import PreferenceSplits, load_preference_splits
from rlhf.modeling.models import load_tokenizer, model_directory
from rlhf.run import distributed
from rlhf.run.tracking import Tracker


@dataclass
class Job:
    """``model_path`` is where from_pretrained reads the base (hub id or local dir); ``tokenizer`` is
    loaded once from it, before any data, so an unreachable model fails first and fast."""

    model: ModelSettings
    model_path: str
    tokenizer: PreTrainedTokenizerBase
    lora: LoraSettings | None  # None where the config has no lora group (evaluate.py)
    hardware: HardwareSettings
    dataset: DatasetSettings
    data: PreferenceSplits
    run_dir: Path
    outputs_root: Path
    tracker: Tracker
    seed: int
    resume: bool = False  # continue from the newest checkpoint in run_dir (train.py resume=...)
    max_nonfinite_updates: int = 3  # consecutive skipped NaN/inf updates before the run stops
    on_resumed: Callable[[int, int | None], None] | None = None  # see resumed_from

    def resumed_from(self, step: int, metrics_rows: int | None = None) -> None:
        """Algorithms call this once the checkpoint of ``step`` is loaded: only then does a resumed run change
        its directory (metrics.jsonl loses the rows logged after ``step``, or after its first ``metrics_rows``
        when the checkpoint recorded them; the config is saved with the resume's overrides), so a resume that
        fails before changes nothing."""
        if self.on_resumed is not None:
            self.on_resumed(step, metrics_rows)

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory (rank 0 of a launch: rlhf/run/distributed.py)."""
        return self.tracker.writes

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"


def build_job(
    cfg: DictConfig,
    run_dir: Path,
    *,
    job_type: str,
    group: str,
    tags: list[str],
    name: str | None = None,
    resume: bool = False,
    on_resumed: Callable[[int, int | None], None] | None = None,
    writes: bool = True,
) -> Job:
    """Parse the shared config groups, open the tracker (metrics.jsonl, W&B), load the tokenizer and the data.

    Used by train.py (rlhf/experiment.py), evaluate.py (rlhf/evaluation/run.py) and the tests, so they all
    see a config the same way. ``group`` is the W&B group unless ``logger.group`` sets one; ``name`` the W&B
    run's name (a resumed run keeps its W&B run, rlhf/run/tracking.py); ``writes=False``: the tracker records
    nothing (a launch's processes other than rank 0). If loading
    fails, the tracker is closed (its W&B run marked failed) before the error goes on.
    """
    model = from_node(ModelSettings, cfg.model, "model")
    lora = from_node(LoraSettings, cfg.lora, "lora") if "lora" in cfg else None
    hardware = from_node(HardwareSettings, cfg.hardware, "hardware")
    dataset = from_node(DatasetSettings, cfg.dataset, "dataset")
    logger = from_node(LoggerSettings, cfg.logger, "logger")
    if hardware.num_threads:
        torch.set_num_threads(hardware.num_threads)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(run_dir, logger, config=OmegaConf.to_container(cfg, resolve=True), job_type=job_type,
                      group=logger.group or group, tags=tags, name=name, resume=resume, writes=writes)  # fmt: skip
    try:
        # Rank 0 builds a missing model cache (the GGUF conversion, tiny_llama) before the others read it.
        with distributed.main_first():
            model_path = model_directory(model)
        tokenizer = load_tokenizer(model_path, model)
        data = load_preference_splits(dataset)
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    extra = {"max_nonfinite_updates": cfg.max_nonfinite_updates} if "max_nonfinite_updates" in cfg else {}  # train.yaml
    outputs_root = Path(cfg.outputs_root)
    return Job(
        model, model_path, tokenizer, lora, hardware, dataset, data, run_dir, outputs_root, tracker, cfg.seed,
        resume=resume, on_resumed=on_resumed, **extra,
    )  # fmt: skip
