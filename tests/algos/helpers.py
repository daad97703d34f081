"""Build a Job from a composed config without going through train.py (the same builder train.py uses)."""

from pathlib import Path

from rlhf.run.job import Job, build_job


def make_job(cfg, run_dir: Path) -> Job:
    return build_job(cfg, run_dir, job_type=cfg.algo.name, group="tests", tags=[])
