"""Run logging: metrics.jsonl in the run directory always, W&B when it is available.

W&B runs offline into the run directory unless WANDB_API_KEY is set or the mode says otherwise.
Any W&B failure (not installed, no key, no network) is one warning; local logging carries on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from rlhf.config import LoggerSettings

log = logging.getLogger(__name__)

_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password)", re.IGNORECASE)


def redact_secrets(config: Any) -> Any:
    """A copy of a nested config with values under secret-looking keys replaced (never log credentials)."""
    if isinstance(config, dict):
        return {k: ("<redacted>" if _SECRET_KEY.search(str(k)) and isinstance(v, str) else redact_secrets(v)) for k, v in config.items()}
    if isinstance(config, list):
        return [redact_secrets(v) for v in config]
    return config


def wandb_mode(settings: LoggerSettings) -> str:
    """online / offline / disabled: explicit mode wins, else online only with an API key."""
    if settings.name == "none":
        return "disabled"
    if settings.mode is not None:
        return settings.mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def _plain(value: Any) -> Any:
    """JSON-safe scalar: tensors and numpy numbers become floats; NaN/inf become strings JSON can hold."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Tracker:
    """Logs to ``run_dir/metrics.jsonl`` (one object per step) and mirrors to W&B when it works."""

    def __init__(self, run_dir: Path, settings: LoggerSettings, *, config: dict, job_type: str, group: str, tags: list[str]):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._wandb = None
        self._run = None
        mode = wandb_mode(settings)
        if mode != "disabled":
            self._start_wandb(settings, mode, config=redact_secrets(config), job_type=job_type, group=group, tags=tags)

    def _start_wandb(self, settings: LoggerSettings, mode: str, **init_kwargs) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb

            self._run = wandb.init(
                project=settings.project,
                entity=settings.entity,
                dir=str(self.run_dir),
                mode=mode,
                settings=wandb.Settings(init_timeout=60, console="off"),
                **init_kwargs,
            )
            self._wandb = wandb
        except Exception as err:  # W&B must never stop training
            log.warning("W&B is off for this run (%s: %s); metrics go to %s only", type(err).__name__, err, self.metrics_path)
            self._run = None

    @property
    def wandb_run(self):
        return self._run

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Append one step's metrics (scalars) to metrics.jsonl and W&B."""
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        if self._run is not None:
            try:
                self._run.log({k: v for k, v in row.items() if k != "step"}, step=int(step))
            except Exception as err:
                log.warning("W&B log failed (%s); continuing with metrics.jsonl only", err)
                self._run = None

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        """A W&B table (e.g. sample completions); skipped without W&B."""
        if self._run is None:
            return
        try:
            self._run.log({name: self._wandb.Table(columns=columns, data=rows)}, step=int(step))
        except Exception as err:
            log.warning("W&B table %s not logged (%s)", name, err)

    def set_summary(self, summary: dict[str, Any]) -> None:
        if self._run is None:
            return
        try:
            self._run.summary.update({k: _plain(v) for k, v in summary.items() if isinstance(_plain(v), (int, float, str, bool))})
        except Exception as err:
            log.warning("W&B summary not updated (%s)", err)

    def finish(self, exit_code: int = 0) -> None:
        if self._run is None:
            return
        try:
            self._run.finish(exit_code=exit_code)
        except Exception as err:
            log.warning("W&B finish failed (%s)", err)
        self._run = None


class TrackerCallback(TrainerCallback):
    """Forwards a transformers Trainer's logs to our Tracker (the Trainer's own W&B reporting stays off)."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.tracker.log({k: v for k, v in logs.items() if isinstance(_plain(v), (int, float))}, step=state.global_step)
