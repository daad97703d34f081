"""Fingerprints of saved weights: the sha256 of a file, and of the weights file a PEFT adapter loads from.

A resumed run compares the fingerprint of the init adapter it started from (stored in its checkpoints) with the
adapter ``algo.init_adapter`` resolves to now (rlhf/algos/ppo/checkpoint.py, rlhf/algos/hf_trainer/checkpoints.py);
bench/adapter_hashes.py fingerprints every adapter a tiny run saves, to show a refactor left training bit-identical.
The adapter fingerprint is the file's sha256, so ``sha256sum <adapter>/adapter_model.safetensors`` prints it too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rlhf.errors import ConfigError

# What PeftModel.from_pretrained loads from an adapter directory, in its order of preference.
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (adapters of 7B models are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def adapter_fingerprint(adapter_dir: str | Path) -> str:
    """The sha256 of the weights file of the PEFT adapter in ``adapter_dir`` (ADAPTER_WEIGHTS)."""
    for name in ADAPTER_WEIGHTS:
        path = Path(adapter_dir) / name
        if path.is_file():
            return file_sha256(path)
    raise FileNotFoundError(f"{adapter_dir} holds no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")


def init_adapter_record(adapter: str | Path | None) -> dict:
    """What a checkpoint stores about the adapter a run started from: its resolved path and fingerprint
    (both None for a run that started from the base)."""
    if adapter is None:
        return {"path": None, "sha256": None}
    return {"path": str(Path(adapter).resolve()), "sha256": adapter_fingerprint(adapter)}


def _run_of(adapter: str) -> str:
    """The run directory an adapter belongs to (<run>/adapter with a summary.json beside it), else the adapter
    directory itself: what algo.init_adapter accepts either way."""
    path = Path(adapter)
    return str(path.parent) if path.name == "adapter" and (path.parent / "summary.json").is_file() else adapter


def _still_there(record: dict) -> bool:
    """Whether the adapter a record names is still at its path, with the same weights."""
    try:
        return adapter_fingerprint(record["path"]) == record["sha256"]
    except FileNotFoundError:
        return False


def check_init_adapter(
    stored: dict | None, current: str | Path | None, checkpoint: str | Path, key: str = "algo.init_adapter"
) -> None:
    """Raise one ConfigError line when the init adapter a run resumes with (``current``: what ``key`` resolves to
    now, None for the base) is not the one its ``checkpoint`` was written with (``stored``, an
    :func:`init_adapter_record`; None: a checkpoint from before records, nothing to compare). The same weights at
    another path (a copied run directory) pass."""
    if stored is None:
        return
    now = init_adapter_record(current)
    if now["sha256"] == stored["sha256"]:
        return
    where = f"resuming from {checkpoint}"
    if stored["path"] is None:
        raise ConfigError(
            f"{where}: that run started from the base model ({key}=null), but {key} now gives {now['path']} "
            f"(run {_run_of(now['path'])}); resume with {key}=null, or start a new run to train from that adapter"
        )
    run = _run_of(stored["path"])
    if _still_there(stored):
        fix = f"resume with {key}={run}"
    else:
        fix = f"that adapter is no longer at {stored['path']}: put it back and resume"
    if now["path"] is None:
        raise ConfigError(
            f"{where}: that run started from the init adapter {stored['path']} (run {run}), but {key} is null now; "
            f"{fix}"
        )
    raise ConfigError(
        f"{where}: {key} now resolves to {now['path']} (run {_run_of(now['path'])}, sha256 {now['sha256'][:12]}), "
        f"not the adapter that run started from, {stored['path']} (run {run}, sha256 {stored['sha256'][:12]}), "
        f"e.g. because outputs/latest/<algo> moved on to a newer run; {fix}, or start a new run to train from the "
        "new one"
    )


def reward_init_adapter(run) -> Path | None:
    """The SFT adapter a finished rm or judge run (a rundir.FinishedRun) started from, merged into its base
    (summary.json ``init_adapter``: an :func:`init_adapter_record`), or None for the base. One ConfigError line if
    it is gone or its weights changed: the reward model's LoRA and head only mean something on top of those."""
    record = run.summary.get("init_adapter")
    if not record:
        return None
    if _still_there(record):
        return Path(record["path"])
    raise ConfigError(
        f"reward model {run.run_dir}: it started from the adapter {record['path']} (run {_run_of(record['path'])}, "
        f"sha256 {record['sha256'][:12]}), which is no longer there with those weights; put that adapter back, or "
        "train the reward model again"
    )
