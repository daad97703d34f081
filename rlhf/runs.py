"""The run-directory contract: summary.json, adapter/, outputs/latest/<algo>, finding earlier runs."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlhf.errors import ConfigError

SUMMARY = "summary.json"
ADAPTER = "adapter"
CHECKPOINTS = "checkpoints"  # resumable checkpoints of every algorithm
CONFIG = Path(".hydra") / "config.yaml"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def point_latest(outputs_root: Path, algo: str, run_dir: Path) -> Path:
    """Atomically switch ``outputs_root/latest/<algo>`` to ``run_dir`` (a relative symlink)."""
    latest_dir = Path(outputs_root) / "latest"
    latest_dir.mkdir(parents=True, exist_ok=True)
    link = latest_dir / algo
    tmp = latest_dir / f".{algo}.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(Path(run_dir).resolve(), latest_dir.resolve()))
    os.replace(tmp, link)
    return link


def resolve_run_dir(path: str | Path, expected_algo: str | None, key: str) -> Path:
    """A finished run directory at ``path`` (a run dir or outputs/latest/<algo>), checked.

    ``key`` names the config option that gave the path, so the error says what to change.
    """
    run_dir = Path(path).resolve()
    summary_path = run_dir / SUMMARY
    if not summary_path.is_file():
        raise ConfigError(f"{key}={path}: not a run directory (no {SUMMARY}); point it at outputs/<algo>/<timestamp>")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if summary.get("status") != "finished":
        raise ConfigError(f"{key}={path}: that run did not finish (status {summary.get('status')!r}); train it again")
    if expected_algo is not None and summary.get("algo") != expected_algo:
        raise ConfigError(f"{key}={path}: that is a {summary.get('algo')!r} run, expected an {expected_algo!r} run")
    if not (run_dir / ADAPTER).is_dir():
        raise ConfigError(f"{key}={path}: the run directory has no {ADAPTER}/ to load")
    return run_dir


def load_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8"))


def load_run_config(run_dir: Path) -> DictConfig:
    """The resolved config Hydra saved for that run."""
    return OmegaConf.load(Path(run_dir) / CONFIG)


def truncate_jsonl(path: Path, keep) -> int:
    """Keep the rows of a JSON-lines file for which ``keep(row)`` holds (a killed run got further than
    its checkpoint); returns how many were dropped. Rewritten through a temporary file and a rename."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in lines if keep(json.loads(line))]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)
    return len(lines) - len(kept)


def truncate_metrics(path: Path, step: int) -> int:
    """Drop metrics.jsonl rows logged after ``step``, the checkpoint a run resumes from."""
    return truncate_jsonl(path, lambda row: row["step"] <= step)
