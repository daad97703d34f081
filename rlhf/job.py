"""What every algorithm receives: the parsed config groups, the data, where to write and how to log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from rlhf.config import DatasetSettings, HardwareSettings, LoraSettings, ModelSettings
from rlhf.data.preference import PreferenceSplits
from rlhf.tracking import Tracker


@dataclass
class Job:
    """``model_path`` is where from_pretrained reads the base (hub id or local dir); ``tokenizer`` is
    loaded once from it, before any data, so an unreachable model fails first and fast."""

    model: ModelSettings
    model_path: str
    tokenizer: PreTrainedTokenizerBase
    lora: LoraSettings
    hardware: HardwareSettings
    dataset: DatasetSettings
    data: PreferenceSplits
    run_dir: Path
    outputs_root: Path
    tracker: Tracker
    seed: int
    resume: bool = False  # continue from the newest checkpoint in run_dir (train.py resume=...)
    max_nonfinite_updates: int = 3  # consecutive skipped NaN/inf updates before the run stops

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"
