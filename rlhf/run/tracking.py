"""Run logging: metrics.jsonl in the run directory always, W&B when it is available.

W&B runs offline into the run directory unless an API key is found (WANDB_API_KEY, or ``wandb login``'s
entry in ~/.netrc) or the mode says otherwise. W&B trouble never stops training: no key with
mode=online logs offline (``wandb sync`` later); an unreachable server (bounded by logger.init_timeout),
W&B failing to import or to log each give one warning, and metrics.jsonl carries on.

One training is one W&B run: its id is saved in ``run_dir/wandb_run.json`` when it starts, and a resumed run
continues it. Runs are named after the algorithm and the command-line overrides (``dpo algo.beta=0.05
lora=r8``), tagged with the config's tags and the overrides, each cut to what W&B accepts; the full overrides
live in the logged config. A finished run's adapter is a ``model`` artifact that evaluations name as inputs.
"""

from __future__ import annotations

import hashlib
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
from rlhf.run.rundir import write_json_atomic

log = logging.getLogger(__name__)

# The W&B run of a run directory (id, name, tags), written when it starts: a resume continues that run.
WANDB_RUN = "wandb_run.json"
# wandb refuses a tag outside 1..64 characters (wandb 0.31's Settings.validate_run_tags), and with it the run.
TAG_LIMIT = 64
# A run name holds the algorithm and every override, each cut to NAME_PART_LIMIT characters, NAME_LIMIT in all.
NAME_PART_LIMIT = 40
NAME_LIMIT = 128
# Overrides that say where a run writes, how it is logged or continued, not what it trains: neither tags nor names.
_UNLABELLED = ("hydra", "logger", "resume", "outputs_root")
# Overrides a run name leaves out: the algorithm leads the name, and a sweep is the run's W&B group.
_UNNAMED = ("algo", "sweep")

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


def _is_scalar(value: Any) -> bool:
    return isinstance(_plain(value), (int, float, str, bool))


def shorten(text: str, limit: int) -> str:
    """``text`` with its whitespace collapsed, in at most ``limit`` characters: a longer one keeps its start
    (for an override, its key) and ends in ``...`` and a hash of the whole, so two long values stay apart."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]
    return f"{text[: limit - 9]}...{digest}"


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def override_labels(overrides: list[str]) -> list[str]:
    """The command-line overrides that say what a run trains (its tags, its name): not where it writes (hydra,
    outputs_root), how it is logged (logger) or that it resumes."""
    return [o for o in overrides if re.split(r"[./@]", _override_key(o))[0] not in _UNLABELLED]


def wandb_tags(tags: list[Any]) -> list[str]:
    """Tags W&B accepts, in order, without repeats: each 1 to TAG_LIMIT characters (longer ones shortened)."""
    kept = [shorten(tag, TAG_LIMIT) for tag in tags]
    return list(dict.fromkeys(tag for tag in kept if tag))


def run_name(algo: str, overrides: list[str]) -> str:
    """A readable W&B run name: the algorithm and the overrides, shortened (``dpo algo.beta=0.05 lora=r8``)."""
    parts = [shorten(o, NAME_PART_LIMIT) for o in override_labels(overrides) if _override_key(o) not in _UNNAMED]
    return shorten(" ".join([algo, *parts]), NAME_LIMIT)


def saved_wandb_run(run_dir: Path) -> dict | None:
    """The W&B run a run directory started (``WANDB_RUN``: id, name, tags), or None if it has none readable."""
    try:
        saved = json.loads((Path(run_dir) / WANDB_RUN).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet (W&B was off), or cut short
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("id"), str) or not saved["id"]:
        return None
    return saved


class Tracker:
    """Logs to ``run_dir/metrics.jsonl`` (one object per step) and mirrors to W&B when it works.

    ``tags`` are shortened to what W&B accepts; ``name`` is the W&B run's name (None: W&B picks one). With
    ``resume``, the W&B run saved in ``run_dir/wandb_run.json`` continues, with its name and tags. With
    ``writes=False`` (a launch's processes other than rank 0, rlhf/run/distributed.py) it records nothing.
    """

    def __init__(
        self,
        run_dir: Path,
        settings: LoggerSettings,
        *,
        config: dict,
        job_type: str,
        group: str,
        tags: list[str],
        name: str | None = None,
        resume: bool = False,
        writes: bool = True,
    ):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.writes = writes
        self._wandb = None
        self._run = None
        self._run_id = None
        self._offline = False
        mode = wandb_mode(settings) if writes else "disabled"
        if mode != "disabled":
            identity = self._identity(name, wandb_tags(tags), resume)
            self._start_wandb(settings, mode, config=redact_secrets(config), job_type=job_type, group=group, **identity)
            self._save_identity(identity)

    def _identity(self, name: str | None, tags: list[str], resume: bool) -> dict[str, Any]:
        """wandb.init's name and tags, and for a resumed run the saved run's id, name and tags (plus new ones)."""
        saved = saved_wandb_run(self.run_dir) if resume else None
        if saved is None:
            if resume:
                log.info("no W&B run saved in %s: the resumed run starts a new W&B run", self.run_dir / WANDB_RUN)
            return {"name": name, "tags": tags}
        old_tags = saved.get("tags") if isinstance(saved.get("tags"), list) else []
        return {
            "id": saved["id"],
            "resume": "allow",  # the run may not exist on the server yet (logged offline, not synced)
            "name": saved.get("name") or name,
            "tags": wandb_tags([*old_tags, *tags]),
        }

    def _save_identity(self, identity: dict[str, Any]) -> None:
        """Write the W&B run's id, name and tags into the run directory, so a resume continues that run."""
        if self._run is None:
            return
        saved = {"id": self._run_id, "name": identity.get("name"), "tags": identity.get("tags", [])}
        try:
            write_json_atomic(self.run_dir / WANDB_RUN, saved)
        except OSError as err:
            log.warning("W&B run id not saved (%s); a resume of this run starts a new W&B run", err)

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
        self._offline = mode == "offline"
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
            self._run_id = self._run.id
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

    @property
    def run_id(self) -> str | None:
        """The W&B run's id (kept after finish), None without W&B."""
        return self._run_id

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Append one step's metrics (scalars) to metrics.jsonl and W&B."""
        if not self.writes:
            return
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
            self._run.summary.update({k: _plain(v) for k, v in summary.items() if _is_scalar(v)})
        except Exception as err:
            log.warning("W&B summary not updated (%s)", err)

    def log_model(self, path: Path, algo: str, metadata: dict[str, Any]) -> str | None:
        """Log the adapter directory ``path`` as a W&B ``model`` artifact named ``<algo>-<run id>`` (offline too:
        ``wandb sync`` uploads it); its name, or None without W&B or when it fails (one warning)."""
        if self._run is None or not Path(path).is_dir():
            return None
        name = f"{algo}-{self._run_id}"
        try:
            artifact = self._wandb.Artifact(
                name, type="model", metadata={k: _plain(v) for k, v in metadata.items() if _is_scalar(v)}
            )
            # immutable: the final adapter is never written again, so W&B need not copy it into its staging area
            artifact.add_dir(str(path), policy="immutable")
            self._run.log_artifact(artifact)
        except Exception as err:
            log.warning("W&B model artifact %s not logged (%s)", name, _first_line(err))
            return None
        return name

    def use_models(self, artifacts: dict[str, Any], names: list[str]) -> None:
        """Name the model artifacts this run compares: ``artifacts`` goes into the W&B config (as
        ``compared_artifacts``) and, online, each of ``names`` becomes an input of this run (W&B's lineage).
        Offline W&B cannot look artifacts up, so the config is the link there. Failures are one warning."""
        if self._run is None:
            return
        try:
            self._run.config.update({"compared_artifacts": artifacts}, allow_val_change=True)
        except Exception as err:
            log.warning("W&B config not updated with the compared artifacts (%s)", _first_line(err))
        if self._offline:
            return
        failed = []
        for name in names:
            try:
                self._run.use_artifact(f"{name}:latest", type="model")
            except Exception as err:  # e.g. that run was logged offline and not synced yet
                failed.append(f"{name} ({_first_line(err)})")
        if failed:
            log.warning("W&B artifacts not linked as inputs: %s; their names are in the config", "; ".join(failed))

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
