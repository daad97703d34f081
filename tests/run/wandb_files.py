"""Read what an offline W&B run wrote: ``<dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb``.

wandb 0.31 has no Python reader for these files (its core, in Go, writes them), so this reads their format:
a 7-byte header (``:W&B``, a magic number, a version), then LevelDB-log chunks in 32 KiB blocks, each a CRC-32,
a length, a type (full, first, middle, last) and that part of a protobuf ``Record``.
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7  # the file's and each chunk's
FULL, LAST = 1, 4


def records(path: Path) -> list[pb.Record]:
    """Every record of one ``.wandb`` file, in order (but a chunk still being written); a chunk whose checksum
    fails is an assertion error."""
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    found, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        crc = int.from_bytes(data[pos : pos + 4], "little")
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if pos + HEADER + length > len(data):  # being written
            break
        chunk = data[pos + HEADER : pos + HEADER + length]
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"{path}: bad chunk at byte {pos}"
        pending += chunk
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            found.append(record)
            pending = b""
    return found


def records_once(folder: Path, kind: str, timeout: float = 30.0) -> list[pb.Record]:
    """The records of one offline run once a record of ``kind`` is among them: wandb's core process writes the
    file on its own time, after ``run.finish()`` or the training process has returned."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(run_file(folder))
        if any(r.WhichOneof("record_type") == kind for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def offline_runs(run_dir: Path) -> list[Path]:
    """The offline-run-* folders W&B wrote into ``run_dir/wandb``, oldest first."""
    return sorted((Path(run_dir) / "wandb").glob("offline-run-*"))


def run_file(folder: Path) -> Path:
    [path] = folder.glob("run-*.wandb")
    return path


def run_record(folder: Path) -> pb.RunRecord:
    """The run record (id, name, tags) of one offline run."""
    return next(r.run for r in records_once(folder, "run") if r.WhichOneof("record_type") == "run")


def artifacts(folder: Path) -> list[pb.ArtifactRecord]:
    """The artifacts a finished offline run logged."""
    return [r.artifact for r in records_once(folder, "exit") if r.WhichOneof("record_type") == "artifact"]


def config(folder: Path) -> dict:
    """A finished offline run's config, its initial values and later updates merged (top-level keys)."""
    merged = {}
    for r in records_once(folder, "exit"):
        items = r.run.config.update if r.WhichOneof("record_type") == "run" else r.config.update
        if r.WhichOneof("record_type") in ("run", "config"):
            merged.update({item.key: json.loads(item.value_json) for item in items})
    return merged
