"""Read .jsonl / .jsonl.gz files of HH rows, with one clear error naming the file and line."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

from rlhf.errors import DataError

REQUIRED_FIELDS = ("chosen", "rejected")


def _open_binary(path: Path):
    # Bytes, decoded line by line, so an encoding error can name its line.
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_hh_rows(path: str | Path) -> list[dict]:
    """Rows ``{"chosen": str, "rejected": str, ...}`` of one HH-format file.

    Raises DataError for a missing or empty file, a truncated gzip, invalid UTF-8, a line that is not
    a JSON object, or a row whose ``chosen``/``rejected`` is missing or not a string. Blank lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file {path} does not exist: check dataset.data_files")
    rows, line_no = [], 0
    try:
        with _open_binary(path) as handle:
            for line_no, raw in enumerate(handle, start=1):
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{line_no} is not valid JSON ({err.msg}): each line must be one JSON object") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{line_no} is a JSON {type(row).__name__}, not an object with 'chosen' and 'rejected'")
                for field in REQUIRED_FIELDS:
                    if field not in row:
                        raise DataError(f"{path}:{line_no} has no '{field}' field: HH rows need 'chosen' and 'rejected' transcripts")
                    if not isinstance(row[field], str):
                        raise DataError(f"{path}:{line_no} field '{field}' is a {type(row[field]).__name__}, not a transcript string")
                rows.append(row)
    except UnicodeDecodeError:
        raise DataError(f"{path}:{line_no} is not valid UTF-8: re-encode the file as UTF-8") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path} is a truncated or corrupt gzip file ({err}) after line {line_no}: re-download it") from None
    if not rows:
        raise DataError(f"{path} has no rows: give a non-empty .jsonl or .jsonl.gz file")
    return rows
