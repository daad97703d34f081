"""train.py as a user runs it: bad input gives one error line, a non-zero exit and no traceback."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_train(tmp_path, *overrides):
    return subprocess.run(
        [
            sys.executable,
            "train.py",
            "debug=tiny",
            f"hydra.run.dir={tmp_path}/run",
            f"outputs_root={tmp_path}/outputs",
            *overrides,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def bad_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "make_override, expected",
    [
        (lambda tmp: "lora.r=0", "lora.r=0 is out of range"),
        (lambda tmp: f"dataset=hh_rlhf dataset.data_files={tmp}/missing.jsonl", "missing.jsonl does not exist"),
        (
            lambda tmp: f"dataset=hh_rlhf dataset.data_files={bad_file(tmp, 'text.jsonl', 'not json at all')}",
            "text.jsonl:1 is not valid JSON",
        ),
        (
            lambda tmp: (
                f"dataset=hh_rlhf dataset.data_files={bad_file(tmp, 'nochosen.jsonl', json.dumps({'rejected': 'x'}))}"
            ),
            "nochosen.jsonl:1 has no 'chosen' field",
        ),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, make_override, expected):
    result = run_train(tmp_path, *make_override(tmp_path).split())
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and expected in summary["error"]
    assert not (tmp_path / "outputs" / "latest").exists()  # a failed run never becomes 'latest'


def test_unknown_algorithm_lists_valid_options(tmp_path):
    result = run_train(tmp_path, "algo=nope")
    assert result.returncode != 0
    assert "Could not find 'algo/nope'" in result.stderr and "rm" in result.stderr
    assert "Traceback" not in result.stderr
