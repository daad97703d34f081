"""Read .jsonl / .jsonl.gz files of HH rows, with one clear error naming the file and line."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

from rlhf.errors import DataError

REQUIRED_FIELDS = ("chosen", "rejected")


def _json_type(value) -> str:
    """The JSON name of a parsed value's type, as a user who wrote the file would call it."""
    names = {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _open_binary(path: Path):
    # Bytes, decoded line by line, so an encoding error can name its line.
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _parse_line(path: Path, line_no: int, line: str) -> dict:
    """One HH row from one line, or a DataError naming ``path:line_no``, what is wrong, and the fix."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{line_no} is not valid JSON ({err.msg}): each line must be one JSON object") from None
    if not isinstance(row, dict):
        raise DataError(f"{path}:{line_no} is a JSON {_json_type(row)}, not an object with 'chosen' and 'rejected'")
    for field in REQUIRED_FIELDS:
        if field not in row:
            raise DataError(
                f"{path}:{line_no} has no '{field}' field: HH rows need 'chosen' and 'rejected' transcripts"
            )
        if not isinstance(row[field], str):
            raise DataError(
                f"{path}:{line_no} field '{field}' is a JSON {_json_type(row[field])}, not a transcript "
                "string: write it as one string '\\n\\nHuman: ...\\n\\nAssistant: ...'"
            )
    return row


def read_hh_rows(path: str | Path) -> list[dict]:
    """Rows ``{"chosen": str, "rejected": str, ...}`` of one HH-format file.

    Raises DataError for a missing, unreadable or empty (or whitespace-only) file, a truncated gzip,
    invalid UTF-8, a line that is not a JSON object, or a row whose ``chosen``/``rejected`` is missing
    or not a string. Blank lines are skipped. Rows that parse but cannot be used (too long, chosen ==
    rejected, ...) are dropped and counted later, by :func:`rlhf.data.preference.parse_rows`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file {path} does not exist: check dataset.data_files")
    rows, line_no = [], 0
    try:
        with _open_binary(path) as handle:
            for line_no, raw in enumerate(handle, start=1):
                line = raw.decode("utf-8")
                if line.strip():
                    rows.append(_parse_line(path, line_no, line))
    except UnicodeDecodeError:
        raise DataError(f"{path}:{line_no} is not valid UTF-8: re-encode the file as UTF-8") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(
            f"{path} is a truncated or corrupt gzip file ({err}) after line {line_no}: re-download it"
        ) from None
    except OSError as err:  # after BadGzipFile, which is an OSError too
        raise DataError(f"{path} cannot be read ({err.strerror or err}): check its permissions") from None
    if not rows:
        raise DataError(f"{path} has no rows (empty or blank lines only): give a non-empty .jsonl or .jsonl.gz file")
    return rows
