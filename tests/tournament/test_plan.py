"""The command lines a tournament runs (seeds, directories, each seed's reward model and judge, overrides) and
what --resume skips, continues or runs again; the driver on a fake runner (no training)."""

import json
from pathlib import Path

import pytest

from rlhf.data.halves import half_record, select_pairs
from rlhf.errors import ConfigError
from rlhf.tournament.driver import StageFailed, run_stages
from rlhf.tournament.plan import (
    EVALUATE_PY,
    TRAIN,
    check_judges,
    load_plan,
    parse_arms,
    save_plan,
    split_overrides,
    stage_steps,
)
from tests.tournament.fakes import fake_plan, write_summary


def args_of(argv: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in argv if "=" in a)


def test_training_stages_sweep_the_seeds_into_one_directory_per_seed(tmp_path):
    plan = fake_plan(tmp_path / "t", seeds=3, overrides=("debug=tiny", "lora=r8"))
    (argv,) = [s.argv for s in stage_steps(plan, "rm")]
    assert argv[:4] == ["python", str(TRAIN), "-m", "algo=rm"]
    args = args_of(argv)
    assert args["seed"] == "0,1,2"
    assert args["hydra.sweep.dir"] == str(plan.directory / "rm")
    assert args["hydra.sweep.subdir"] == "seed_${seed}"
    assert args["outputs_root"] == str(plan.directory / "outputs")  # never the repository's outputs/latest
    assert args["logger.group"] == "tournament-test"
    assert argv[-2:] == ["debug=tiny", "lora=r8"]  # the extra overrides reach every training stage
    assert "algo.reward_model" not in args


def test_online_arms_train_against_their_seeds_reward_model(tmp_path):
    plan = fake_plan(tmp_path / "t", arms=("dpo", "ppo", "grpo", "rloo"))
    assert plan.stages == ["rm", "dpo", "ppo", "grpo", "rloo", "evaluate"]
    for arm in ("ppo", "grpo", "rloo"):
        args = args_of(stage_steps(plan, arm)[0].argv)
        assert args["algo.reward_model"] == f"{plan.directory}/rm/seed_${{seed}}"
        assert args["hydra.sweep.dir"] == str(plan.directory / arm)
    assert "algo.reward_model" not in args_of(stage_steps(plan, "dpo")[0].argv)


def test_evaluate_compares_base_and_each_arm_of_the_seed_with_its_judge(tmp_path):
    plan = fake_plan(tmp_path / "t", overrides=("debug=tiny", "algo.max_steps=2", "dataset.n_test=8"),
                     stage_overrides={"evaluate": ("evaluation.n_prompts=4",), "dpo": ("algo.beta=0.2",)})  # fmt: skip
    steps = stage_steps(plan, "evaluate")
    assert [s.seeds for s in steps] == [(0,), (1,)]  # one evaluation per seed
    argv = steps[1].argv
    assert argv[:2] == ["python", str(EVALUATE_PY)] and "-m" not in argv
    args = args_of(argv)
    assert args["seed"] == "1"  # the sampling seed follows the training seed
    assert args["hydra.run.dir"] == str(plan.directory / "evaluate" / "seed_1")
    assert args["outputs_root"] == str(plan.directory / "outputs")
    assert args["++policies.base"] == "base"
    assert args["++policies.dpo"] == str(plan.directory / "dpo" / "seed_1")
    assert args["++policies.ppo"] == str(plan.directory / "ppo" / "seed_1")
    assert args["++policies.grpo"] == args["++policies.rloo"] == "null"
    assert args["judge"] == str(plan.directory / "rm" / "seed_1")  # hh_synthetic: the proxy, beside the gold judge
    # evaluate.py gets the overrides it shares (model, data) and its own, not the training ones
    assert args["debug"] == "tiny" and args["dataset.n_test"] == "8" and args["evaluation.n_prompts"] == "4"
    assert "algo.max_steps" not in args and "algo.beta" not in args
    assert args_of(stage_steps(plan, "dpo")[0].argv)["algo.beta"] == "0.2"
    assert "algo.beta" not in args_of(stage_steps(plan, "ppo")[0].argv)


def test_without_a_gold_judge_each_seed_trains_and_uses_the_independent_judge(tmp_path):
    plan = fake_plan(tmp_path / "t", dataset="hh_rlhf")
    assert plan.stages == ["rm", "judge", "dpo", "ppo", "evaluate"]
    assert args_of(stage_steps(plan, "judge")[0].argv)["algo"] == "judge"
    assert args_of(stage_steps(plan, "evaluate")[0].argv)["judge"] == str(plan.directory / "judge" / "seed_0")
    assert args_of(stage_steps(plan, "ppo")[0].argv)["algo.reward_model"] == f"{plan.directory}/rm/seed_${{seed}}"


def test_without_a_gold_judge_the_tournament_trains_under_the_judge_protocol_and_checks_the_judges(tmp_path):
    plan = fake_plan(tmp_path / "t", dataset="hh_rlhf")
    for stage in ("rm", "judge", "dpo", "ppo"):
        assert args_of(stage_steps(plan, stage)[0].argv)["dataset.judge_protocol"] == "true"
    gold = fake_plan(tmp_path / "g")  # hh_synthetic: the gold judge judges, every run on all pairs
    assert "dataset.judge_protocol" not in args_of(stage_steps(gold, "rm")[0].argv)
    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [], "rejected": []} for i in range(40)]
    for seed in plan.seeds:
        for stage, half in (("rm", "proxy_half"), ("dpo", "proxy_half"), ("judge", "judge_half")):
            write_summary(plan.job_dir(stage, seed), **half_record(select_pairs(rows, half, 0), half, 0))
    check_judges(plan)  # opposite halves of one salt: disjoint by content
    write_summary(plan.job_dir("dpo", 1), **half_record(rows, "all", 0))  # a DPO run on every pair
    with pytest.raises(ConfigError, match=r"^judge=.*judge/seed_1: not independent of seed 1's dpo run .*pairs=all"):
        check_judges(plan)


def test_a_named_wandb_group_wins(tmp_path):
    plan = fake_plan(tmp_path / "t", overrides=("logger.group=mine",))
    assert args_of(stage_steps(plan, "rm")[0].argv)["logger.group"] == "mine"


def test_resume_skips_finished_jobs_continues_checkpoints_and_reruns_the_rest(tmp_path):
    plan = fake_plan(tmp_path / "t", seeds=4)
    write_summary(plan.job_dir("ppo", 0))  # finished
    stopped = write_summary(plan.job_dir("ppo", 1), status="interrupted")
    (stopped / "checkpoints" / "step-2").mkdir(parents=True)
    (stopped / "checkpoints" / "step-2" / "state.pt").write_bytes(b"x")  # a complete PPO checkpoint
    write_summary(plan.job_dir("ppo", 2), status="failed", error="boom")  # failed before any checkpoint
    fresh, resumed = stage_steps(plan, "ppo")
    assert args_of(fresh.argv)["seed"] == "2,3" and fresh.seeds == (2, 3)
    assert fresh.set_aside == (plan.job_dir("ppo", 2),)
    assert resumed.argv == ["python", str(TRAIN), f"resume={stopped}"]
    write_summary(plan.job_dir("ppo", 1))
    write_summary(plan.job_dir("ppo", 2))
    write_summary(plan.job_dir("ppo", 3))
    assert stage_steps(plan, "ppo") == []
    plan.job_dir("evaluate", 0).mkdir(parents=True)
    (plan.job_dir("evaluate", 0) / "results.json").write_text("{}")
    plan.job_dir("evaluate", 1).mkdir(parents=True)  # started, no results: evaluated again
    assert [step.seeds for step in stage_steps(plan, "evaluate")] == [(1,), (2,), (3,)]


def fake_runner(plan, calls, fail=None):
    """Pretend to run a command: every job it names finishes, except ``fail`` = (stage, seed), which fails."""

    def run(argv):
        calls.append(argv)
        args = args_of(argv)
        if "resume" in args:
            write_summary(Path(args["resume"]))
            return 0
        if "hydra.run.dir" in args:  # an evaluation
            Path(args["hydra.run.dir"]).mkdir(parents=True)
            (Path(args["hydra.run.dir"]) / "results.json").write_text("{}")
            return 0
        stage = args["hydra.sweep.dir"].rsplit("/", 1)[1]
        code = 0
        for seed in map(int, args["seed"].split(",")):
            if (stage, seed) == fail:
                write_summary(plan.job_dir(stage, seed), status="failed", error="ValueError: boom\ntraceback")
                code = 1
            else:
                write_summary(plan.job_dir(stage, seed))
        return code

    return run


def test_the_driver_runs_the_stages_in_order_and_stops_at_a_failed_one(tmp_path):
    plan = fake_plan(tmp_path / "t")
    calls, said = [], []
    with pytest.raises(StageFailed) as failed:
        run_stages(plan, fake_runner(plan, calls, fail=("ppo", 1)), say=lambda *a, **k: said.append(a[0]))
    assert [args_of(c)["algo"] for c in calls] == ["rm", "dpo", "ppo"]  # no evaluation after the failure
    message = str(failed.value)
    assert f"{plan.job_dir('ppo', 1)}: failed: ValueError: boom" in message
    assert f"python -m rlhf.tournament --resume {plan.directory}" in message
    assert any("stage rm, seeds 0,1:" in line and "algo=rm" in line for line in said)  # each command printed

    calls.clear()  # --resume: the failed job is set aside and run again, then the evaluation
    run_stages(plan, fake_runner(plan, calls), say=lambda *a, **k: said.append(a[0]))
    assert [args_of(c).get("algo", "evaluate") for c in calls] == ["ppo", "evaluate", "evaluate"]
    assert args_of(calls[0])["seed"] == "1"
    assert (plan.directory / "ppo" / ".seed_1.attempt-1" / "summary.json").is_file()
    assert "tournament: stage rm: every seed finished, skipped" in said


def test_the_plan_survives_a_round_trip(tmp_path):
    plan = fake_plan(tmp_path / "t", overrides=("debug=tiny",), stage_overrides={"dpo": ("algo.beta=0.2",)})
    save_plan(plan)
    assert load_plan(plan.directory) == plan
    assert json.loads((plan.directory / "tournament.json").read_text())["seeds"] == [0, 1]


def test_overrides_by_stage_and_the_keys_the_tournament_owns():
    general, staged = split_overrides(["debug=tiny", "dpo:algo.beta=0.2", "evaluate:evaluation.n_prompts=8"])
    assert general == ("debug=tiny",)
    assert staged == {"dpo": ("algo.beta=0.2",), "evaluate": ("evaluation.n_prompts=8",)}
    for bad in ("seed=3", "algo=dpo", "outputs_root=x", "ppo:algo.reward_model=x", "hydra.sweep.dir=x"):
        with pytest.raises(ConfigError, match="the tournament sets"):
            split_overrides([bad])


def test_arms_are_checked():
    assert parse_arms("ppo,grpo") == ("ppo", "grpo")
    for bad in ("ppo,sft", "ppo,ppo", ""):
        with pytest.raises(ConfigError, match="--arms"):
            parse_arms(bad)


def test_a_directory_hydra_cannot_take_unquoted_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="letters, digits"):
        fake_plan(tmp_path / "a b")
