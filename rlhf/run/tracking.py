"""Run logging: metrics.jsonl in the run directory always, W&B when it is available.

W&B runs offline into the run directory unless an API key is found (WANDB_API_KEY, or ``wandb login``'s
entry in ~/.netrc) or the mode says otherwise. W&B trouble never stops training: no key with
mode=online logs offline (``wandb sync`` later); an unreachable server (bounded by logger.init_timeout),
W&B failing to import or to log each give one warning, and metrics.jsonl carries on.
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from transformers import TrainerCallback

from rlhf.config import LoggerSettings

log = logging.getLogger(__name__)

_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|passw(or)?d|credential|private[_-]?key)", re.IGNORECASE)
# Tokenizer settings whose names contain "token" but whose values are vocabulary entries, not credentials.
_SPECIAL_TOKENS = re.compile(r"^(pad|bos|eos|unk|sep|cls|mask)_token$", re.IGNORECASE)


def _is_secret(key: Any, value: Any) -> bool:
    key = str(key)
    return isinstance(value, str) and bool(_SECRET_KEY.search(key)) and not _SPECIAL_TOKENS.match(key)


def redact_secrets(config: Any) -> Any:
    """A copy of a nested config with values under secret-looking keys replaced (never log credentials)."""
    if isinstance(config, dict):
        return {k: ("<redacted>" if _is_secret(k, v) else redact_secrets(v)) for k, v in config.items()}
    if isinstance(config, list):
        return [redact_secrets(v) for v in config]
    return config


# The W&B cloud's API hosts: older wandb logs in to the first, wandb >= 0.31 to the second (both accept either).
_CLOUD_HOSTS = ("api.wandb.ai", "api.forge.coreweave.com")


def wandb_hosts() -> tuple[str, ...]:
    """Host names ``wandb login`` may have written into ~/.netrc for the configured server."""
    base_url = os.environ.get("WANDB_BASE_URL")
    return (urlsplit(base_url).netloc,) if base_url else _CLOUD_HOSTS


def wandb_key_found() -> bool:
    """Whether W&B has credentials: WANDB_API_KEY (or an identity token file), or a ~/.netrc entry for the host.

    Checked before wandb.init, which without a key prompts for one (or fails after a wait).
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")  # where wandb and curl look
    try:
        entries = netrc.netrc(path)
    except (OSError, netrc.NetrcParseError):  # no file, unreadable or malformed: no key from it
        return False
    return any((entry := entries.authenticators(host)) and entry[2] for host in wandb_hosts())


def wandb_mode(settings: LoggerSettings) -> str:
    """online / offline / disabled: explicit mode wins, else online only with an API key."""
    if settings.name == "none":
        return "disabled"
    if settings.mode is not None:
        return settings.mode
    return "online" if wandb_key_found() else "offline"


def _fix_for(err: Exception, settings: LoggerSettings) -> str:
    """What the user can do about a failed wandb.init."""
    if isinstance(err, ImportError):
        return "To use W&B: pip install wandb; to silence this: logger=none"
    return (
        f"Without a reachable server set logger.mode=offline (then `wandb sync`); "
        f"for a slow one raise logger.init_timeout (now {settings.init_timeout:g}s)"
    )


def _first_line(err: Exception) -> str:
    # wandb's messages can span lines; a warning stays one line.
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def _plain(value: Any) -> Any:
    """JSON-safe scalar: tensors and numpy numbers become floats; NaN/inf become strings JSON can hold."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Tracker:
    """Logs to ``run_dir/metrics.jsonl`` (one object per step) and mirrors to W&B when it works."""

    def __init__(
        self, run_dir: Path, settings: LoggerSettings, *, config: dict, job_type: str, group: str, tags: list[str]
    ):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._wandb = None
        self._run = None
        mode = wandb_mode(settings)
        if mode != "disabled":
            self._start_wandb(settings, mode, config=redact_secrets(config), job_type=job_type, group=group, tags=tags)

    def _start_wandb(self, settings: LoggerSettings, mode: str, **init_kwargs) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        if mode == "online" and not wandb_key_found():
            # wandb.init would prompt for a key, or wait and fail; offline keeps the run for `wandb sync`.
            log.warning(
                "logger.mode=online but no W&B API key was found "
                "(WANDB_API_KEY, or a ~/.netrc entry for %s from `wandb login`): "
                "W&B logs offline into %s; upload it later with `wandb sync %s/wandb/offline-run-*`",
                " or ".join(wandb_hosts()),
                self.run_dir / "wandb",
                self.run_dir,
            )
            mode = "offline"
        try:
            import wandb

            self._run = wandb.init(
                project=settings.project,
                entity=settings.entity,
                dir=str(self.run_dir),
                mode=mode,
                # init_timeout bounds the wait for an unreachable server.
                settings=wandb.Settings(init_timeout=settings.init_timeout, console="off"),
                **init_kwargs,
            )
            self._wandb = wandb
        except Exception as err:  # W&B must never stop training
            log.warning(
                "W&B is off for this run (%s); metrics go to %s only. %s",
                _first_line(err),
                self.metrics_path,
                _fix_for(err, settings),
            )
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
            self._run.summary.update(
                {k: _plain(v) for k, v in summary.items() if isinstance(_plain(v), (int, float, str, bool))}
            )
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
            self.tracker.log(
                {k: v for k, v in logs.items() if isinstance(_plain(v), (int, float))}, step=state.global_step
            )
