"""Bad data files, end to end through load_preference_splits: each case has one documented outcome.

Either the row is dropped and counted under a reason (the rest loads), or loading stops with one
DataError naming the file, and the line where there is one.
"""

import gzip
import json
import random
import re

import pytest

from rlhf.config import DatasetSettings
from rlhf.data.hh_rlhf import MAX_ROW_CHARS
from rlhf.data.jsonl import read_hh_rows
from rlhf.data.preference import load_preference_splits
from rlhf.errors import DataError
from tests.test_train_cli import error_lines, run_train


def hh_row(i: int, chosen: str = "Sure, here it is.", rejected: str = "No.") -> dict:
    prompt = f"\n\nHuman: Question number {i}?"
    return {"chosen": f"{prompt}\n\nAssistant: {chosen}", "rejected": f"{prompt}\n\nAssistant: {rejected}"}


GOOD = [json.dumps(hh_row(i)).encode() for i in range(8)]
# Other prompts than GOOD's: a test row whose prompt is in the training split is dropped.
GOOD_TEST = [json.dumps(hh_row(100 + i)).encode() for i in range(8)]


def with_bad_line(line: bytes) -> bytes:
    """A file of the good rows with ``line`` as line 3."""
    return b"\n".join(GOOD[:2] + [line] + GOOD[2:]) + b"\n"


def load(tmp_path, name: str, content: bytes):
    """Load ``content`` as the train file (a good test file beside it), as train.py would."""
    train, test = tmp_path / name, tmp_path / "good-test.jsonl"
    train.write_bytes(content)
    test.write_bytes(b"\n".join(GOOD_TEST) + b"\n")
    # max_bad_fraction 0.5: one unusable row among eight good ones is dropped, not fatal.
    settings = DatasetSettings(
        name="hh_rlhf", seed=0, n_train=None, n_test=None, family_weights=None, subset=None,
        data_files={"train": str(train), "test": str(test)}, test_fraction=None,
        max_train_rows=None, max_eval_rows=None, max_bad_fraction=0.5, max_steps={}, judge_protocol=False,
    )  # fmt: skip
    return load_preference_splits(settings)


# --- dropped and counted: the rest of the file loads ---------------------------------------------------------


@pytest.mark.parametrize(
    "bad_row, reason",
    [
        # One 10 MB line: more than any context window holds, so it is dropped (truncating would change the pair).
        (hh_row(99, chosen="x" * 10_000_000), "too_long"),
        (hh_row(99, chosen="Same answer.", rejected="Same answer."), "chosen_equals_rejected"),
        # Half of an emoji's UTF-16 pair (JSON "\ud83d"): Python reads it, but no UTF-8 writer (pyarrow) can.
        (hh_row(99, chosen="Sure \ud83d"), "lone_surrogate"),
        (hh_row(99, rejected="\ude00 No."), "lone_surrogate"),
        (
            {"chosen": "\n\nHuman: Hi \udfff\n\nAssistant: Yes.", "rejected": "\n\nHuman: Hi \udfff\n\nAssistant: No."},
            "lone_surrogate",
        ),
    ],
    ids=["10mb_line", "chosen_equals_rejected", "surrogate_in_chosen", "surrogate_in_rejected", "surrogate_in_prompt"],
)
def test_unusable_rows_are_dropped_and_counted(tmp_path, bad_row, reason):
    content = with_bad_line(json.dumps(bad_row).encode())
    splits = load(tmp_path, "train.jsonl", content)
    assert len(splits.train) == len(GOOD) and len(splits.test) == len(GOOD_TEST)
    assert splits.dropped == {reason: 1}


def test_a_whole_surrogate_pair_is_kept(tmp_path):
    # JSON "\ud83d\ude00" is one emoji (U+1F600), not a bad row.
    content = with_bad_line(json.dumps(hh_row(99, chosen="Sure \ud83d\ude00")).encode())
    assert b"\\ud83d\\ude00" in content
    splits = load(tmp_path, "train.jsonl", content)
    assert len(splits.train) == len(GOOD) + 1 and not splits.dropped
    assert any("\U0001f600" in ex["chosen"][0]["content"] for ex in splits.train)


def test_the_length_cap_is_far_above_real_rows(hh_sample):
    longest = max(len(r["chosen"]) + len(r["rejected"]) for r in read_hh_rows(hh_sample))
    assert longest * 10 < MAX_ROW_CHARS


# --- one DataError naming the file (and the line) ------------------------------------------------------------


def gzip_cut_in_half() -> bytes:
    data = gzip.compress(b"\n".join(GOOD * 50) + b"\n")
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.jsonl", b"", r"empty\.jsonl has no rows"),
        ("blank.jsonl", b"\n   \n\t\n", r"blank\.jsonl has no rows"),
        ("empty.jsonl.gz", gzip.compress(b""), r"empty\.jsonl\.gz has no rows"),
        (
            "missing.jsonl",
            with_bad_line(json.dumps({"rejected": "\n\nHuman: Hi\n\nAssistant: No."}).encode()),
            r"missing\.jsonl:3 has no 'chosen' field",
        ),
        (
            "list.jsonl",
            with_bad_line(json.dumps({"chosen": ["\n\nHuman: Hi", "\n\nAssistant: Yes."], "rejected": "x"}).encode()),
            r"list\.jsonl:3 field 'chosen' is a JSON array, not a transcript string",
        ),
        (
            "number.jsonl",
            with_bad_line(json.dumps({"chosen": "\n\nHuman: Hi\n\nAssistant: Yes.", "rejected": 42}).encode()),
            r"number\.jsonl:3 field 'rejected' is a JSON number, not a transcript string",
        ),
        (
            "latin1.jsonl",
            with_bad_line(b'{"chosen": "\\n\\nHuman: caf\xe9?\\n\\nAssistant: Oui.", "rejected": "x"}'),
            r"latin1\.jsonl:3 is not valid UTF-8: re-encode",
        ),
        ("cut.jsonl.gz", gzip_cut_in_half(), r"cut\.jsonl\.gz is a truncated or corrupt gzip file"),
    ],
    ids=[
        "empty",
        "whitespace_only",
        "empty_gz",
        "missing_field",
        "list_content",
        "number_content",
        "invalid_utf8",
        "truncated_gz",
    ],
)
def test_bad_files_are_one_error_naming_file_and_line(tmp_path, name, content, message):
    with pytest.raises(DataError, match=message) as caught:
        load(tmp_path, name, content)
    assert "\n" not in str(caught.value)  # one line, as train.py prints it


# --- dataset.max_bad_fraction is judged on each file's rows, before the random split -------------------------


def single_file(tmp_path, bad_lines: set[int], n_rows: int = 100) -> DatasetSettings:
    """One ``n_rows``-row file (chosen == rejected on ``bad_lines``), split 90/10 with seed 0, limit 5%."""
    path = tmp_path / "all.jsonl"
    rows = [hh_row(i, chosen="Same.", rejected="Same.") if i in bad_lines else hh_row(i) for i in range(n_rows)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return DatasetSettings(
        name="hh_rlhf", seed=0, n_train=None, n_test=None, family_weights=None, subset=None,
        data_files=str(path), test_fraction=0.1, max_train_rows=None, max_eval_rows=None, max_bad_fraction=0.05,
        max_steps={}, judge_protocol=False,
    )  # fmt: skip


def seeded_test_lines(n_rows: int, seed: int = 0, test_fraction: float = 0.1) -> list[int]:
    """The lines the seeded split puts in the test split (the same shuffle as rlhf.data.preference)."""
    order = list(range(n_rows))
    random.Random(seed).shuffle(order)
    return order[: round(n_rows * test_fraction)]


@pytest.mark.parametrize("lands_in", ["test", "train"])
def test_one_bad_row_in_a_hundred_passes_wherever_the_split_puts_it(tmp_path, lands_in):
    test_lines = seeded_test_lines(100)
    bad = test_lines[0] if lands_in == "test" else next(i for i in range(100) if i not in test_lines)
    splits = load_preference_splits(single_file(tmp_path, {bad}))
    # 1 of 100 rows (1%) is under the 5% limit; it was dropped from the split it landed in.
    assert splits.dropped == {"chosen_equals_rejected": 1}
    assert (len(splits.train), len(splits.test)) == ((90, 9) if lands_in == "test" else (89, 10))


def test_too_many_bad_rows_in_the_file_fail_naming_file_count_share_and_limit(tmp_path):
    # 6 of 100 (6%) is over the 5% limit even though most of them land in the train split.
    settings = single_file(tmp_path, set(range(6)))
    with pytest.raises(DataError) as caught:
        load_preference_splits(settings)
    message = str(caught.value)
    assert message.startswith(f"{settings.data_files}: 6 of 100 rows (6.0%) are unusable")
    assert "dataset.max_bad_fraction=0.05" in message and "\n" not in message


def test_a_train_and_test_file_are_each_judged_on_their_own_rows(tmp_path):
    # One bad row in the 9-row train file is 11% (over a 10% limit); the clean test file does not dilute it.
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_bytes(with_bad_line(json.dumps(hh_row(99, chosen="Same.", rejected="Same.")).encode()))
    test.write_bytes(b"\n".join(GOOD * 10) + b"\n")
    settings = DatasetSettings(
        name="hh_rlhf", seed=0, n_train=None, n_test=None, family_weights=None, subset=None,
        data_files={"train": str(train), "test": str(test)}, test_fraction=None,
        max_train_rows=None, max_eval_rows=None, max_bad_fraction=0.1, max_steps={}, judge_protocol=False,
    )  # fmt: skip
    with pytest.raises(DataError, match=rf"^{re.escape(str(train))}: 1 of 9 rows \(11\.1%\) are unusable"):
        load_preference_splits(settings)


# --- the same error through train.py: one `error:` line, exit code 2, no traceback -----------------------------


def test_train_cli_reports_a_bad_line_as_one_error_line(tmp_path):
    # tests/test_train_cli.py covers invalid JSON and a missing field; this is the byte-decoding path.
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(with_bad_line(b'{"chosen": "caf\xe9", "rejected": "x"}'))
    result = run_train(tmp_path, "dataset=hh_rlhf", f"dataset.data_files={bad}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert error_lines(result) == [f"error: {bad}:3 is not valid UTF-8: re-encode the file as UTF-8"]
    assert "Traceback" not in result.stderr
