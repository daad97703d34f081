"""The report of a hand-written 2-seed tournament (tests/tournament/fakes.py: scores constant within a seed, so
every interval is the t-interval over the two seed means, worked out by hand: mean +- t(0.975, 1) * |a - b| / 2,
t(0.975, 1) = 12.7062): report.json, report.md, the PNGs; no training, no W&B."""

import json
from dataclasses import replace

import pytest
from PIL import Image

from rlhf.errors import ConfigError
from rlhf.tournament.report import write_report
from tests.tournament.fakes import NO_WANDB, fake_tournament


@pytest.fixture
def report(tmp_path):
    plan = fake_tournament(tmp_path / "t")
    return plan, write_report(plan.directory)


T1 = 12.7062  # t(0.975, 1)


def interval(stat):
    return (stat["mean"], stat["low"], stat["high"])


def test_scores_and_win_rates_per_method(report):
    _, r = report
    assert list(r["methods"]) == ["base", "dpo", "ppo"]
    dpo, ppo = r["methods"]["dpo"], r["methods"]["ppo"]
    assert interval(dpo["judge"]) == pytest.approx((1.0, 1.0, 1.0))
    assert interval(dpo["gold"]) == pytest.approx((0.5, 0.5, 0.5))
    # PPO's judge score is 2 in seed 0 and 0 in seed 1: seed means 2, 0, se 1, two runs say little
    assert interval(ppo["judge"]) == pytest.approx((1.0, 1.0 - T1, 1.0 + T1), abs=1e-4)
    assert interval(ppo["kl"]) == pytest.approx((2.0, 2.0 - T1, 2.0 + T1), abs=1e-4)
    assert ppo["per_seed"] == {"gold": pytest.approx([0.8, 0.8]), "judge": [2.0, 0.0], "kl": [1.0, 3.0]}
    assert interval(dpo["win_vs_base_judge"]) == pytest.approx((1.0, 1.0, 1.0))
    # wins in seed 0, ties in seed 1: se 0.25
    assert interval(ppo["win_vs_base_judge"]) == pytest.approx((0.75, 0.75 - T1 / 4, 0.75 + T1 / 4), abs=1e-4)
    assert interval(dpo["win_vs_chosen_gold"]) == pytest.approx((0.0, 0.0, 0.0))  # 0.5 < 1 on every prompt
    assert interval(dpo["win_vs_chosen_judge"]) == pytest.approx((1.0, 1.0, 1.0))  # 1 > 0.5
    assert "win_vs_base_judge" not in r["methods"]["base"]
    assert interval(r["chosen"]["gold"]) == pytest.approx((1.0, 1.0, 1.0))
    assert r["prompts"] == [4, 4] and r["seeds"] == [0, 1] and r["gold"] is True


def test_differences_and_verdicts(report):
    _, r = report
    rows = {(d["a"], d["b"], d["score"]): d for d in r["differences"]}
    assert list(rows)[:2] == [("ppo", "dpo", "gold"), ("ppo", "dpo", "judge")]  # arm vs arm first
    assert interval(rows["ppo", "dpo", "gold"]["difference"]) == pytest.approx((0.3, 0.3, 0.3))
    assert rows["ppo", "dpo", "gold"]["verdict"] == "PPO better"  # a constant +0.3: p 0, Holm p 0
    assert (rows["ppo", "dpo", "gold"]["p"], rows["ppo", "dpo", "gold"]["p_holm"]) == (0.0, 0.0)
    assert interval(rows["ppo", "dpo", "judge"]["difference"]) == pytest.approx((0.0, -T1, T1), abs=1e-4)  # +1 / -1
    assert rows["ppo", "dpo", "judge"]["p"] == pytest.approx(1.0)
    assert rows["ppo", "dpo", "judge"]["verdict"] == "no difference at 95% (family)"
    assert rows["dpo", "base", "judge"]["verdict"] == "DPO better"
    assert interval(rows["ppo", "base", "judge"]["difference"]) == pytest.approx((1.0, 1.0 - T1, 1.0 + T1), abs=1e-4)
    # seed means 2 and 0: t = 1 on 1 df, p = 0.5; Holm multiplies the smallest non-zero p-values of the family
    ppo_base = rows["ppo", "base", "judge"]
    assert ppo_base["p"] == pytest.approx(0.5) and ppo_base["p_holm"] >= ppo_base["p"]
    assert ppo_base["verdict"] == "no difference at 95% (family)"


def test_costs_held_out_points_and_files(report):
    plan, r = report
    costs = r["costs"]
    assert costs["rm"]["wall_time_s"] == 15.0  # seeds at 10 s and 20 s
    assert costs["ppo"]["tokens_forwarded"] == 1000  # recorded by one seed only
    assert costs["dpo"]["tokens_forwarded"] is None and costs["dpo"]["episodes"] == 64
    assert costs["ppo"]["phase_seconds"] == {"generation": 50.0, "other": 20.0, "update": 30.0}
    assert costs["evaluate"]["wall_time_s"] == 30.0
    points = [p for p in r["held_out"] if p["seed"] == 0]
    assert [(p["when"], p["kl"], p["gold"], p["judge"]) for p in points] == [
        ("start", 0.0, 0.0, 0.0),
        ("final", 1.5, 0.7, 1.2),
    ]
    assert all(p["judge_comparable"] for p in points)  # PPO's reward model is the judge on hh_synthetic

    assert sorted(r["plots"]) == ["differences.png", "frontier.png", "scores.png"]
    for name in r["plots"]:
        assert Image.open(plan.directory / name).size[0] > 300
    assert json.loads((plan.directory / "report.json").read_text())["differences"][0]["verdict"] == "PPO better"

    md = (plan.directory / "report.md").read_text()
    assert "| PPO − DPO | gold | 0.300 [0.300, 0.300] | <0.001 | <0.001 | PPO better |" in md
    assert "| PPO | 0.800 [0.800, 0.800] | 1.000 [-11.706, 13.706] |" in md
    assert "Holm-adjusted" in md
    dpo_cost = next(line for line in md.splitlines() if line.startswith("| DPO | 40"))
    assert dpo_cost.split(" | ")[4:6] == ["-", "-"]  # tokens never recorded: "-"
    assert "fixed before any run" in md and "![frontier](frontier.png)" in md


def test_a_missing_evaluation_is_one_error(tmp_path):
    plan = fake_tournament(tmp_path / "t")
    (plan.job_dir("evaluate", 1) / "samples.jsonl").unlink()
    with pytest.raises(ConfigError, match="samples.jsonl is missing"):
        write_report(plan.directory)


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """W&B offline with no key and its own files under tmp (conftest turns W&B off)."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    yield
    import wandb

    wandb.teardown()


def test_the_report_is_one_wandb_run_in_the_tournaments_group(tmp_path, wandb_offline):
    from rlhf.tournament.plan import load_plan, save_plan
    from tests.run.wandb_files import offline_runs, run_record

    plan = fake_tournament(tmp_path / "t")
    save_plan(replace(load_plan(plan.directory), logger={**NO_WANDB, "name": "wandb", "mode": "offline"}))
    write_report(plan.directory)
    (run,) = offline_runs(plan.directory)
    record = run_record(run)
    assert (record.run_group, record.job_type) == ("tournament-test", "tournament")
