import json

import pytest

from rlhf.errors import ConfigError
from rlhf.runs import point_latest, resolve_run_dir, write_json_atomic


def make_run(root, name, status="finished", algo="rm"):
    run = root / name
    (run / "adapter").mkdir(parents=True)
    write_json_atomic(run / "summary.json", {"status": status, "algo": algo})
    return run


def test_latest_switches_to_the_newest_run(tmp_path):
    first, second = make_run(tmp_path, "a"), make_run(tmp_path, "b")
    link = point_latest(tmp_path, "rm", first)
    assert link.resolve() == first.resolve()
    point_latest(tmp_path, "rm", second)
    assert link.resolve() == second.resolve()
    assert json.loads((link / "summary.json").read_text())["status"] == "finished"


@pytest.mark.parametrize(
    "status, algo, message",
    [("failed", "rm", "did not finish"), ("finished", "dpo", "is a 'dpo' run, expected an 'rm' run")],
)
def test_resolve_run_dir_refuses_unusable_runs(tmp_path, status, algo, message):
    run = make_run(tmp_path, "x", status=status, algo=algo)
    with pytest.raises(ConfigError, match=message):
        resolve_run_dir(run, "rm", "algo.reward_model")


def test_resolve_run_dir_refuses_a_plain_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"algo\.reward_model=.*not a run directory"):
        resolve_run_dir(tmp_path, "rm", "algo.reward_model")
