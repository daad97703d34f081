"""The command line: a new plan composes every stage's overrides before anything runs; mistakes are one line."""

import json

import pytest

from rlhf.errors import ConfigError
from rlhf.tournament.cli import main, new_plan
from rlhf.tournament.plan import PLAN


def test_a_new_plan_composes_every_stage(tmp_path):
    plan = new_plan(2, "dpo,ppo", tmp_path / "t", ["debug=tiny", "dpo:algo.beta=0.2"])
    assert plan.seeds == (0, 1) and plan.arms == ("dpo", "ppo") and plan.dataset == "hh_synthetic"
    assert plan.logger["name"] == "none"  # debug=tiny: no W&B, for the report too
    assert plan.group == "tournament-t" and plan.directory == (tmp_path / "t").resolve()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["algo.beta=0.2"], "train.py algo=rm algo.beta=0.2"),  # a dpo key for every stage: names the stage's line
        (["debug=tiny", "algo.beta=0.05,0.1"], "sweeps a value"),
        (["debug=tiny", "grpo:algo.beta=0.1"], "stage grpo, which this tournament does not run"),
    ],
)
def test_overrides_that_do_not_fit_are_refused_before_anything_runs(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        new_plan(2, "dpo,ppo", tmp_path / "t", overrides)
    assert not (tmp_path / "t").exists()


def test_a_used_directory_and_resume_with_new_settings_are_refused(tmp_path, capsys):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / PLAN).write_text(json.dumps({}))
    with pytest.raises(SystemExit) as stop:
        main(["--dir", str(tmp_path / "t"), "debug=tiny"])
    assert stop.value.code == 2
    assert f"continue that tournament with --resume {(tmp_path / 't').resolve()}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--resume", str(tmp_path / "t"), "--seeds", "5"])
    assert "drop --seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--seeds", "0", "--dir", str(tmp_path / "u"), "debug=tiny"])
    assert "--seeds 0: give at least 1 seed" in capsys.readouterr().err
