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

from rlhf.config import DatasetSettings, HardwareSettings, LoggerSettings, LoraSettings, ModelSettings, check, from_node
from rlhf.data.preference import load_preference_splits
from rlhf.errors import ConfigError
from rlhf.job import Job
from rlhf.models import load_tokenizer, model_directory
from rlhf.resume import check_resume_target, run_status
from rlhf.runs import CONFIG, peak_rss_mb, point_latest, write_json_atomic
from rlhf.stopping import Interrupted, handle_stop_signals
from rlhf.tracking import Tracker

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
    summary = {"algo": cfg.algo.name, "model": cfg.model.name, "dataset": cfg.dataset.name, "status": "running", "resumed": resume}
    tracker = None
    try:
        module = algorithm(cfg.algo.name)
        settings = from_node(module.Settings, cfg.algo, "algo")
        model = from_node(ModelSettings, cfg.model, "model")
        lora = from_node(LoraSettings, cfg.lora, "lora")
        hardware = from_node(HardwareSettings, cfg.hardware, "hardware")
        dataset = from_node(DatasetSettings, cfg.dataset, "dataset")
        logger = from_node(LoggerSettings, cfg.logger, "logger")
        check(cfg.max_nonfinite_updates >= 1, "max_nonfinite_updates", cfg.max_nonfinite_updates, "must be >= 1 skipped updates in a row")
        if hardware.num_threads:
            torch.set_num_threads(hardware.num_threads)
        tracker = Tracker(
            run_dir,
            logger,
            config=OmegaConf.to_container(cfg, resolve=True),
            job_type=cfg.algo.name,
            group=logger.group or context.sweep_name or cfg.algo.name,
            tags=[str(t) for t in cfg.tags] + context.override_tags,
        )
        model_path = model_directory(model)
        tokenizer = load_tokenizer(model_path, model)
        data = load_preference_splits(dataset)
        summary.update(train_rows=len(data.train), test_rows=len(data.test), dropped_rows=dict(data.dropped))
        log.info("data %s: %d train, %d test, dropped %s", data.source, len(data.train), len(data.test), dict(data.dropped))
        job = Job(model, model_path, tokenizer, lora, hardware, dataset, data, run_dir, Path(cfg.outputs_root), tracker, cfg.seed,
                  resume=resume, max_nonfinite_updates=cfg.max_nonfinite_updates)
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
        if tracker is not None:
            tracker.set_summary(summary)
            tracker.finish(exit_code=0 if summary["status"] == "finished" else 1)
    point_latest(Path(cfg.outputs_root), cfg.algo.name, run_dir)
    return summary
