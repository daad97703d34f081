"""One owner per run directory: an exclusive OS lock on ``<run dir>/.lock``, taken before anything is written.

``flock`` locks belong to the open file, so the kernel drops the lock when its process dies, however it
dies: a SIGKILL or an out-of-memory kill never leaves a stale lock behind, and a later ``resume=`` takes
the directory over. The owner's pid is written into the file, so a second process can say who holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from rlhf.errors import ConfigError

LOCK = ".lock"


def _read_pid(handle) -> int | None:
    handle.seek(0)
    text = handle.read().strip()
    return int(text) if text.isdigit() else None


class RunDirLock:
    """``with RunDirLock(run_dir):`` holds the directory for the block; a second holder gets a ConfigError
    naming the owner's pid. Creates the directory (and nothing else in it but the lock file)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._handle = None

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # kept open: the lock lives as long as this file handle
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(handle)
            handle.close()
            raise ConfigError(
                f"{self.path.parent} is in use by a live run (pid {owner}): one process owns a run directory; "
                f"wait for it to finish or stop it (kill -TERM {owner}), then resume, or use another hydra.run.dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(run_dir: Path) -> int | None:
    """The pid of the live process that owns ``run_dir`` (this one included), or None when no process does."""
    path = Path(run_dir) / LOCK
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(handle) or -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
