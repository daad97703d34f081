import gzip
import json

import pytest

from rlhf.data.jsonl import read_hh_rows
from rlhf.errors import DataError

ROW = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_plain_and_gzipped_rows(tmp_path):
    plain = write_lines(tmp_path / "a.jsonl", [json.dumps(ROW)] * 3)
    packed = tmp_path / "a.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_hh_rows(plain) == [ROW] * 3
    assert read_hh_rows(packed) == [ROW] * 3


@pytest.mark.parametrize(
    "content, message",
    [
        ([json.dumps(ROW), "this is not json"], r"bad\.jsonl:2 is not valid JSON"),
        (["[1, 2]"], r"bad\.jsonl:1 is a JSON array"),
        ([json.dumps({"rejected": "x"})], r"bad\.jsonl:1 has no 'chosen' field"),
        ([json.dumps({"chosen": 3, "rejected": "x"})], r"bad\.jsonl:1 field 'chosen' is a JSON number"),
        (["", "  "], r"bad\.jsonl has no rows"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        read_hh_rows(write_lines(tmp_path / "bad.jsonl", content))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl does not exist: check dataset.data_files"):
        read_hh_rows(tmp_path / "nope.jsonl")


def test_truncated_gzip(tmp_path):
    data = gzip.compress((json.dumps(ROW) + "\n").encode() * 200)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        read_hh_rows(path)


def test_invalid_utf8(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes((json.dumps(ROW) + "\n").encode() + b'{"chosen": "caf\xe9", "rejected": "x"}\n')
    with pytest.raises(DataError, match=r"latin\.jsonl:2 is not valid UTF-8"):
        read_hh_rows(path)
