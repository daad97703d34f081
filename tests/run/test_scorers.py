"""A resume scores with the reward model and sentinel judge its run started with, not what outputs/latest gives
now (issue 42 case 2, issue 38 item 5)."""

import json

import pytest
from omegaconf import OmegaConf

from rlhf.algos import online_trl
from rlhf.algos.ppo import loop
from rlhf.errors import ConfigError
from rlhf.run.job import build_job
from rlhf.run.rundir import point_latest, write_json_atomic
from rlhf.run.scorers import SCORERS
from tests.conftest import compose_train, tiny_overrides


def scorer_run(outputs, algo: str, name: str, weights: bytes):
    """A finished rm or judge run whose adapter holds ``weights``; latest/<algo> points at it."""
    run = outputs / algo / name
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_model.safetensors").write_bytes(weights)
    (run / ".hydra").mkdir()
    OmegaConf.save(compose_train(tiny_overrides(algo=algo)), run / ".hydra" / "config.yaml", resolve=True)
    write_json_atomic(run / "summary.json", {"status": "finished", "algo": algo})
    point_latest(outputs, algo, run)
    return run.resolve()


def job(outputs, run_dir, algo, resume, **extra):
    cfg = compose_train(tiny_overrides(algo=algo, **extra), outputs_root=outputs)
    return cfg, build_job(cfg, run_dir, job_type=algo, group="tests", tags=[], resume=resume)


def killed_after_start(outputs, run_dir, algo, **extra):
    """A run of ``algo`` that pinned its scorers at its start, as a SIGKILL after a checkpoint leaves it."""
    cfg, new = job(outputs, run_dir, algo, resume=False, **extra)
    settings = online_trl_settings(cfg) if algo == "grpo" else ppo_settings(cfg)
    pin = online_trl.pin_scorers if algo == "grpo" else loop.pin_scorers
    scorers = {"algo.reward_model": online_trl.reward_model_run(new, settings.reward_model)}
    if algo == "ppo" and settings.sentinel_prompts:
        scorers["algo.sentinel_judge"] = loop.judge_run(new, settings, scorers["algo.reward_model"])
    pin(new, scorers)
    checkpoint = run_dir / "checkpoints" / "step-000002"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.pt").write_bytes(b"")  # what a resume looks for first (PPO)
    return json.loads((run_dir / SCORERS).read_text())


def online_trl_settings(cfg):
    from rlhf.algos import grpo
    from rlhf.config import from_node

    return from_node(grpo.Settings, cfg.algo, "algo")


def ppo_settings(cfg):
    from rlhf.algos.ppo import Settings
    from rlhf.config import from_node

    return from_node(Settings, cfg.algo, "algo")


def test_a_resumed_grpo_run_refuses_a_moved_reward_model(tmp_path):
    outputs, run_dir = tmp_path / "outputs", tmp_path / "grpo"
    old = scorer_run(outputs, "rm", "old", b"old weights")
    pinned = killed_after_start(outputs, run_dir, "grpo")
    assert pinned["algo.reward_model"]["path"] == str(old)
    new = scorer_run(outputs, "rm", "new", b"new weights")  # `python train.py algo=rm seed=7` moves latest/rm
    cfg, resumed = job(outputs, run_dir, "grpo", resume=True)
    with pytest.raises(ConfigError) as refused:
        online_trl.train(resumed, online_trl_settings(cfg), None, None, {})
    line = str(refused.value)
    assert "\n" not in line and f"algo.reward_model now gives {new}" in line and f"not {old}" in line, line
    assert line.endswith(f"resume with algo.reward_model={old}"), line


def test_a_resumed_ppo_run_refuses_a_moved_sentinel_judge_and_accepts_the_same_weights_elsewhere(tmp_path):
    outputs, run_dir = tmp_path / "outputs", tmp_path / "ppo"
    scorer_run(outputs, "rm", "rm", b"reward model")
    old = scorer_run(outputs, "judge", "old", b"old judge")
    # a judge found through outputs/latest, as algo.sentinel_judge=auto finds one on a dataset without a gold judge
    extra = {"algo": "ppo", "algo.sentinel_prompts": "4", "algo.sentinel_judge": str(outputs / "latest" / "judge")}
    killed_after_start(outputs, run_dir, **extra)
    copy = scorer_run(outputs, "judge", "copy", b"old judge")  # the same weights at another path: not a change
    cfg, resumed = job(outputs, run_dir, resume=True, **extra)
    settings = ppo_settings(cfg)
    judge = loop.judge_run(resumed, settings, loop.reward_model(resumed, settings))
    assert judge.run_dir == copy and loop.pin_scorers(resumed, {"algo.sentinel_judge": judge}) is None
    new = scorer_run(outputs, "judge", "new", b"new judge")
    with pytest.raises(ConfigError, match=rf"algo.sentinel_judge now gives {new} .*, not {old} .*which the run"):
        loop.build(resumed, settings)
