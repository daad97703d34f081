"""The run-directory contract: summary.json, adapter/, outputs/latest/<algo>, and the one way to find an earlier
run or adapter (finished_run, resolve_adapter) with the one same-base rule (ModelSettings.same_base)."""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlhf.config import ModelSettings, from_node
from rlhf.errors import ConfigError

SUMMARY = "summary.json"
ADAPTER = "adapter"
ADAPTER_CONFIG = "adapter_config.json"  # what makes a directory a PEFT adapter
CHECKPOINTS = "checkpoints"  # resumable checkpoints of every algorithm
CONFIG = Path(".hydra") / "config.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"  # the command line that made the run (sweep reports read it)
METRICS = "metrics.jsonl"
# OS errors that mean "the disk is full or read-only, permissions forbid writing, or a file is in the way of a
# folder": a StorageError, not a bug.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR)


# Trainer checkpoints (rm, sft, dpo): transformers' folder prefix and file names (TRAINER_STATE_NAME, the weights
# _load_from_checkpoint accepts), spelled out so listing checkpoints needs no transformers import
# (tests/algos/hf_trainer/test_checkpoints.py checks them against transformers').
PREFIX = "checkpoint"
TRAINER_STATE = "trainer_state.json"
WEIGHTS = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_STEP = re.compile(rf"^{PREFIX}-(\d+)$")


def checkpoint_folders(run_dir: Path) -> list[Path]:
    """Every ``checkpoint-<step>`` folder in ``run_dir/checkpoints``, complete or not, by step (oldest first)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(_STEP.match(p.name).group(1)))


def is_complete(checkpoint: Path) -> bool:
    """Whether a resume can load ``checkpoint``: its trainer_state.json parses as JSON and its weights exist."""
    try:
        json.loads((Path(checkpoint) / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, cut short (UnicodeDecodeError is a ValueError too)
        return False
    return any((Path(checkpoint) / name).is_file() for name in WEIGHTS)


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """The Trainer checkpoints in ``run_dir/checkpoints`` a run can resume from, oldest first."""
    return [p for p in checkpoint_folders(run_dir) if is_complete(p)]


# PPO's checkpoints (rlhf/algos/ppo/checkpoint.py): step-<n>/ is complete once it holds its full training state.
PPO_PREFIX, PPO_STATE = "step", "state.pt"


def has_complete_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint a resume can load (a Trainer's or PPO's)."""
    root = Path(run_dir) / CHECKPOINTS
    return bool(complete_checkpoints(run_dir)) or any((p / PPO_STATE).is_file() for p in root.glob(f"{PPO_PREFIX}-*"))


def write_probe(directory: Path) -> OSError | None:
    """Why ``directory`` (or, where it does not exist yet, the folder that would hold it) cannot be written (a
    read-only disk, a file in the way, no permission), or None. Tried with a temporary folder, removed again, so
    nothing stays behind."""
    ancestor = Path(directory).absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        Path(tempfile.mkdtemp(prefix=".rlhf-write-check-", dir=ancestor)).rmdir()
    except OSError as err:
        if err.filename is None:
            err.filename = str(ancestor)
        return err
    return None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file and a rename, so readers (and a resume after a kill) never see
    half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a half-written file behind
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON atomically (``write_text_atomic``)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def peak_cuda_mb() -> float | None:
    """Peak GPU memory torch allocated since ``reset_peaks`` (what the planner predicts), None without a GPU."""
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None


def reset_peaks() -> None:
    """Count peak memory afresh from now: one job of a Hydra multirun (one process, several runs) then reports
    its own peak, not the process's so far. Linux resets the resident peak (VmHWM) on "5" written to
    /proc/self/clear_refs; where that is refused, the peak stays the process's (as ``ru_maxrss``)."""
    import torch  # before the reset: a first import's memory is not the run's

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process since ``reset_peaks`` (Linux VmHWM), else since its start."""
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        found = None
    if found:
        return int(found.group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove_dead_links(folder: Path, prefix: str) -> None:
    """Remove the ``<prefix><pid>`` links of processes that died (killed between making one and renaming it);
    a live process's link is another run switching the pointer now."""
    for path in folder.glob(prefix + "*"):
        pid = path.name.removeprefix(prefix)
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def remove_temporaries(run_dir: Path) -> list[str]:
    """Remove what writes cut short by a kill left in ``run_dir`` (``*.tmp`` files, ``adapter.tmp-*``
    folders); only the lock's owner calls this, so none is being written. Returns the names removed."""
    run_dir = Path(run_dir)
    found = [*run_dir.glob("*.tmp"), *run_dir.glob(".hydra/*.tmp"), *run_dir.glob("adapter.tmp-*")]
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return sorted(str(p.relative_to(run_dir)) for p in found)


def point_latest(outputs_root: Path, algo: str, run_dir: Path) -> Path:
    """Atomically switch ``outputs_root/latest/<algo>`` to ``run_dir`` (a relative symlink)."""
    latest_dir = Path(outputs_root) / "latest"
    latest_dir.mkdir(parents=True, exist_ok=True)
    link = latest_dir / algo
    _remove_dead_links(latest_dir, f".{algo}.tmp-")
    tmp = latest_dir / f".{algo}.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(Path(run_dir).resolve(), latest_dir.resolve()))
    os.replace(tmp, link)
    return link


POLICY_ALGOS = ("sft", "dpo", "ppo", "grpo", "rloo")  # runs whose adapter/ is a causal-LM policy
REWARD_ALGOS = ("rm", "judge")  # runs whose adapter/ is a reward model (algo=judge: rm on the other half of the pairs)


@dataclass(frozen=True)
class FinishedRun:
    """A finished run directory, checked: where it is, its summary.json and its resolved config."""

    run_dir: Path
    summary: dict
    config: DictConfig

    @property
    def algo(self) -> str:
        return self.summary.get("algo")

    @property
    def model(self) -> ModelSettings:
        """The base model that run trained on."""
        return from_node(ModelSettings, self.config.model, "model")

    @property
    def adapter(self) -> Path:
        return self.run_dir / ADAPTER


def finished_run(
    path: str | Path,
    key: str,
    algos: str | tuple[str, ...] | None = None,
    model: ModelSettings | None = None,
    base_fix: str = "make them match",
) -> FinishedRun:
    """The finished run at ``path`` (a run directory or outputs/latest/<algo>), checked: it exists, finished,
    is one of ``algos`` and has an adapter/; with ``model``, it trained on the same base (the one rule:
    :meth:`ModelSettings.same_base`). ``key`` names the option that gave the path and ``base_fix`` says how
    to fix a different base (``{run_model}`` in it names that run's model), so every error says what to change."""
    algos = (algos,) if isinstance(algos, str) else algos
    run_dir = Path(path).expanduser()
    if not run_dir.exists():
        raise ConfigError(
            f"{key}={path}: nothing is there; "
            "give a run directory (outputs/<algo>/<timestamp>) or outputs/latest/<algo>"
        )
    if not (run_dir / SUMMARY).is_file():
        raise ConfigError(
            f"{key}={path}: not a run directory (no {SUMMARY}); "
            "point it at outputs/<algo>/<timestamp> or outputs/latest/<algo>"
        )
    run_dir = run_dir.resolve()
    summary = load_summary(run_dir)
    if summary.get("status") != "finished":
        raise ConfigError(f"{key}={path}: that run did not finish (status {summary.get('status')!r}); train it again")
    if algos is not None and summary.get("algo") not in algos:
        raise ConfigError(
            f"{key}={path}: that is a {summary.get('algo')!r} run, expected an {' or '.join(map(repr, algos))} run"
        )
    if not (run_dir / ADAPTER).is_dir():
        raise ConfigError(f"{key}={path}: the run directory has no {ADAPTER}/ to load")
    run = FinishedRun(run_dir, summary, load_run_config(run_dir))
    if model is not None and not run.model.same_base(model):
        base, fix = f"model={model.name}", base_fix.format(run_model=run.model.name)
        if run.model.name == model.name:  # one option, other overrides: naming the option would change nothing
            differs = run.model.differences(model)
            base += f" ({', '.join(f'{k}={there!r} there, {here!r} here' for k, (there, here) in differs.items())})"
            fix = f"set {' '.join(f'{k}={there}' for k, (there, _) in differs.items())} as that run had"
        raise ConfigError(
            f"{key}={path}: that run trained on model={run.model.name}, a different base from {base}; {fix}"
        )
    return run


def resolve_adapter(
    value: str | Path, key: str, model: ModelSettings | None = None, base_fix: str = "make them match"
) -> Path:
    """The causal-LM LoRA adapter ``value`` names: a directory holding adapter_config.json, or a finished
    policy run (``POLICY_ALGOS``; e.g. outputs/latest/sft) whose adapter/ is one, checked as :func:`finished_run`."""
    given = Path(value).expanduser()
    if (given / ADAPTER_CONFIG).is_file():
        adapter = given
    else:
        if given.exists() and not (given / SUMMARY).is_file():
            raise ConfigError(
                f"{key}={value}: neither a run directory ({SUMMARY}) nor an adapter directory ({ADAPTER_CONFIG}); "
                f"point it at outputs/<algo>/<timestamp>, outputs/latest/<algo> or an adapter directory"
            )
        adapter = finished_run(given, key, POLICY_ALGOS, model, base_fix).adapter
    return check_policy_adapter(adapter, key, value)


def check_policy_adapter(adapter: Path, key: str, value: str | Path) -> Path:
    """``adapter`` if it is a causal-LM LoRA adapter; else one error naming ``key=value`` and the fix."""
    if not (adapter / ADAPTER_CONFIG).is_file():
        raise ConfigError(
            f"{key}={value}: {adapter} holds full weights, not a LoRA adapter (trained with lora=none); "
            "LoRA adapters share one base: use runs trained with lora=r8/r16/r64, "
            f"or load it as the model (model.name_or_path={adapter})"
        )
    task = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("task_type")
    if task not in (None, "CAUSAL_LM"):
        raise ConfigError(
            f"{key}={value}: that adapter is a {task} adapter (a reward model?), a policy needs a CAUSAL_LM one"
        )
    return adapter


def load_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8"))


def resolved_yaml(cfg: DictConfig) -> str:
    """``cfg`` resolved, as YAML that :func:`load_run_config` reads back to the same values: a resolved string that
    still holds ``${`` (a value escaped on the command line, ``tags=[\\${oc.env:HOME}]``) is escaped again, or the
    reload would interpolate it."""

    def escaped(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: escaped(v) for k, v in value.items()}
        if isinstance(value, list):
            return [escaped(v) for v in value]
        return value.replace("${", "\\${") if isinstance(value, str) else value

    return OmegaConf.to_yaml(OmegaConf.create(escaped(OmegaConf.to_container(cfg, resolve=True))))


def load_run_config(run_dir: Path) -> DictConfig:
    """The resolved config Hydra saved for that run."""
    return OmegaConf.load(Path(run_dir) / CONFIG)


def _parsed(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def truncate_jsonl(path: Path, keep, limit: int | None = None) -> int:
    """Keep the rows of a JSON-lines file for which ``keep(row)`` holds, and at most the first ``limit``
    (a killed run got further than its checkpoint); returns how many were dropped. A line that does not
    parse (the last one, when a kill cut an append short) is dropped too. Rewritten through a temporary
    file and a rename."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = []
    for index, line in enumerate(lines):
        row = _parsed(line)
        if row is not None and keep(row) and (limit is None or index < limit):
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def count_rows(path: Path) -> int:
    """How many rows a JSON-lines file holds (0 when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def truncate_metrics(path: Path, step: int, rows: int | None = None) -> int:
    """Drop metrics.jsonl rows logged after the checkpoint a run resumes from: those after ``step``, and when
    the checkpoint recorded how many rows the file held (``rows``), any beyond them (a final evaluation logged
    at the checkpoint's own step, which the resume redoes)."""
    return truncate_jsonl(path, lambda row: row["step"] <= step, limit=rows)
