"""One train.py run: parse the config groups, load data, dispatch to the algorithm, write the run directory."""

from __future__ import annotations

import importlib
import logging
import random
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlhf.config import check, from_node
from rlhf.errors import ConfigError
from rlhf.run.job import build_job
from rlhf.run.resume import check_resume_target, run_status
from rlhf.run.rundir import CONFIG, peak_rss_mb, point_latest, write_json_atomic
from rlhf.run.stopping import Interrupted, handle_stop_signals

log = logging.getLogger(__name__)

# The one dispatch table: algo.name -> module with Settings and train(job, settings).
ALGORITHMS = {
    "rm": "rlhf.algos.rm",
    "sft": "rlhf.algos.sft",
    "dpo": "rlhf.algos.dpo",
    "ppo": "rlhf.algos.ppo",
}


def algorithm(name: str):
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algo={name!r}: valid algorithms are {', '.join(sorted(ALGORITHMS))}")
    return importlib.import_module(ALGORITHMS[name])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class RunContext:
    """What the entry point knows about this job: its directory, and for W&B the sweep and overrides."""

    run_dir: Path
    sweep_name: str | None = None
    override_tags: list[str] = field(default_factory=list)


def run_experiment(cfg: DictConfig, context: RunContext | Path) -> dict:
    """Train ``cfg.algo`` into the run directory; returns the summary. On failure the summary records the error."""
    if not isinstance(context, RunContext):
        context = RunContext(run_dir=Path(context))
    run_dir = context.run_dir
    resume = check_resume_target(cfg.get("resume"), run_dir)
    if resume and run_status(run_dir) == "finished":
        raise ConfigError(f"resume={cfg.resume}: that run finished; nothing to resume")
    if not resume and (run_dir / "summary.json").exists():
        raise ConfigError(f"{run_dir} already holds a run: never overwritten; set another hydra.run.dir")
    (run_dir / CONFIG).parent.mkdir(parents=True, exist_ok=True)
    # The contract promises a resolved config (Hydra saves interpolations unresolved).
    OmegaConf.save(cfg, run_dir / CONFIG, resolve=True)
    started = time.time()
    summary = {
        "algo": cfg.algo.name,
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "status": "running",
        "resumed": resume,
    }
    job = None
    try:
        module = algorithm(cfg.algo.name)
        settings = from_node(module.Settings, cfg.algo, "algo")
        check(
            cfg.max_nonfinite_updates >= 1,
            "max_nonfinite_updates",
            cfg.max_nonfinite_updates,
            "must be >= 1 skipped updates in a row",
        )
        job = build_job(cfg, run_dir, job_type=cfg.algo.name, group=context.sweep_name or cfg.algo.name,
                        tags=[str(t) for t in cfg.tags] + context.override_tags, resume=resume)  # fmt: skip
        data = job.data
        summary.update(train_rows=len(data.train), test_rows=len(data.test), dropped_rows=dict(data.dropped))
        log.info(
            "data %s: %d train, %d test, dropped %s", data.source, len(data.train), len(data.test), dict(data.dropped)
        )
        # Seeded last: building a missing model (tiny_llama, the GGUF conversion) draws random numbers,
        # and a run must not depend on whether the model cache existed.
        seed_everything(cfg.seed)
        with handle_stop_signals():
            metrics = module.train(job, settings)
        summary.update(metrics, status="finished")
    except Interrupted as err:
        summary.update(status="interrupted", error=str(err))
        raise
    except BaseException as err:
        summary.update(status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=20))
        raise
    finally:
        summary.update(wall_time_s=round(time.time() - started, 2), peak_rss_mb=round(peak_rss_mb(), 1))
        write_json_atomic(run_dir / "summary.json", summary)
        if job is not None:
            job.tracker.set_summary(summary)
            job.tracker.finish(exit_code=0 if summary["status"] == "finished" else 1)
    point_latest(Path(cfg.outputs_root), cfg.algo.name, run_dir)
    return summary
