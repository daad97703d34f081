"""What every algorithm receives: the parsed config groups, the data, where to write and how to log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf.config import DatasetSettings, HardwareSettings, LoraSettings, ModelSettings
from rlhf.data.preference import PreferenceSplits
from rlhf.tracking import Tracker


@dataclass
class Job:
    model: ModelSettings
    lora: LoraSettings
    hardware: HardwareSettings
    dataset: DatasetSettings
    data: PreferenceSplits
    run_dir: Path
    outputs_root: Path
    tracker: Tracker
    seed: int

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"
