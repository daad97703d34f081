"""Build a Job from a composed config without going through train.py (the same builder train.py uses)."""

import json
from pathlib import Path

from rlhf.experiment import run_experiment
from rlhf.run.job import Job, build_job
from tests.conftest import compose_train, tiny_overrides


def make_job(cfg, run_dir: Path) -> Job:
    return build_job(cfg, run_dir, job_type=cfg.algo.name, group="tests", tags=[])


def rm_outputs(tmp_path_factory) -> Path:
    """An outputs root holding one finished tiny rm run at latest/rm (what PPO, GRPO and RLOO score with)."""
    root = tmp_path_factory.mktemp("outputs")
    run_experiment(compose_train(tiny_overrides(), outputs_root=root), root / "rm" / "run")
    return root


def metric_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
