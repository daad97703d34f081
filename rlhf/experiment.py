"""One train.py run: parse the config groups, load data, dispatch to the algorithm, write the run directory."""

from __future__ import annotations

import difflib
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
from rlhf.errors import ConfigError, StorageError
from rlhf.plan.fits import check_fits
from rlhf.run import costs, distributed
from rlhf.run.job import Job, build_job
from rlhf.run.lock import RunDirLock
from rlhf.run.resume import check_resume_target, run_status
from rlhf.run.rundir import (
    CHECKPOINTS,
    CONFIG,
    METRICS,
    OVERRIDES,
    STORAGE_ERRNOS,
    SUMMARY,
    has_complete_checkpoint,
    peak_cuda_mb,
    peak_rss_mb,
    point_latest,
    remove_temporaries,
    reset_peaks,
    resolved_yaml,
    truncate_metrics,
    write_json_atomic,
    write_text_atomic,
)
from rlhf.run.stopping import Interrupted, handle_stop_signals, resume_command
from rlhf.run.tracking import override_labels, run_name

log = logging.getLogger(__name__)

# The one dispatch table: algo.name -> module with Settings and train(job, settings).
ALGORITHMS = {
    "rm": "rlhf.algos.rm",
    "judge": "rlhf.algos.rm",  # a reward model on the other half of the pairs: evaluate.py's independent judge
    "sft": "rlhf.algos.sft",
    "dpo": "rlhf.algos.dpo",
    "ppo": "rlhf.algos.ppo",
    "grpo": "rlhf.algos.grpo",
    "rloo": "rlhf.algos.rloo",
}


def algorithm(name: str):
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algo={name!r}: valid algorithms are {', '.join(sorted(ALGORITHMS))}")
    return importlib.import_module(ALGORITHMS[name])


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SEEDS = 2**32  # numpy's seeds are 0 .. 2**32 - 1


def top_level_keys() -> list[str]:
    """The keys a train.py config has at its top: conf/train.yaml's own and one per config group it picks (the
    overlays, experiment=, sweep=, debug=, write into those; Hydra's settings are not the run's)."""
    train = OmegaConf.load(CONF_DIR / "train.yaml")
    defaults = OmegaConf.to_container(train.defaults)  # unresolved: `${debug}_${algo}` means nothing here
    groups = [key for entry in defaults if isinstance(entry, dict) for key, option in entry.items()
              if option is not None and "/" not in key and " " not in key and key != "hydra"]  # fmt: skip
    return sorted({*train.keys(), *groups} - {"defaults"})


def _check_top_level_keys(cfg: DictConfig) -> None:
    """A key no group reads (``+max_nonfinite_update=1``, a typo) would be ignored: refuse it, as from_node refuses
    one inside a group."""
    known = top_level_keys()
    unknown = sorted(set(cfg.keys()) - set(known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"unknown key {unknown[0]}: {hint}valid top-level keys are {', '.join(known)}")


def check_config(cfg: DictConfig):
    """Every check of a composed train config that needs neither weights nor data, before a run or a plan uses it
    (train.py and ``python -m rlhf.plan`` alike): the top-level keys, the seed, the non-finite guard and the
    algorithm's settings. Returns the algorithm's module and its Settings."""
    _check_top_level_keys(cfg)
    seed = cfg.seed
    check(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < SEEDS, "seed", seed,
          f"must be an integer from 0 to {SEEDS - 1}")  # fmt: skip
    check(
        cfg.max_nonfinite_updates >= 1,
        "max_nonfinite_updates",
        cfg.max_nonfinite_updates,
        "must be >= 1 skipped updates in a row",
    )
    module = algorithm(cfg.algo.name)
    return module, from_node(module.Settings, cfg.algo, "algo")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class RunContext:
    """What the entry point knows about this job: its directory, its command-line overrides (saved beside the
    config, as Hydra would), and for W&B the sweep and the overrides as tags and in the run's name (both
    shortened to what W&B accepts by rlhf/run/tracking.py)."""

    run_dir: Path
    sweep_name: str | None = None
    override_tags: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)


def run_experiment(cfg: DictConfig, context: RunContext | Path) -> dict:
    """Train ``cfg.algo`` into the run directory; returns the summary. On failure the summary records the error.

    The run directory has one owner, this process, from before anything is written (rlhf/run/lock.py).
    """
    if not isinstance(context, RunContext):
        context = RunContext(run_dir=Path(context))
    if not distributed.is_main():  # a launch's other processes train beside rank 0 and write nothing
        distributed.agree(None)
        return _run_follower(cfg, context)
    try:
        resume = check_resume_target(cfg.get("resume"), context.run_dir)
        lock = _lock(context.run_dir)
    except BaseException as err:
        distributed.agree(err)  # the other processes stop too, instead of waiting for rank 0
        raise
    try:
        try:
            _check_directory(cfg, context.run_dir, resume)
            check_fits(cfg)  # will it fit in hardware.memory_gib? before any weights load (rlhf/plan/)
        except BaseException as err:
            distributed.agree(err)
            raise
        distributed.agree(None)
        return _run_locked(cfg, context, resume)
    finally:
        lock.release()


def _lock(run_dir: Path) -> RunDirLock:
    try:
        return RunDirLock(run_dir).acquire()
    except OSError as err:  # the directory cannot be made: a read-only disk, a file in the way
        failure = storage_error(err, run_dir)
        if failure is None:
            raise
        raise failure from err


def _check_directory(cfg: DictConfig, run_dir: Path, resume: bool) -> None:
    """A resumed run must not have finished; a new one never mixes its files with an earlier one's."""
    if resume and run_status(run_dir) == "finished":
        raise ConfigError(f"resume={cfg.resume}: that run finished; nothing to resume")
    leftovers = [str(name) for name in (SUMMARY, CONFIG, METRICS, CHECKPOINTS) if (run_dir / name).exists()]
    if not resume and leftovers:
        unfinished = "" if (run_dir / SUMMARY).exists() else f" that did not finish; continue it: resume={run_dir}"
        raise ConfigError(
            f"{run_dir} already holds a run ({', '.join(leftovers)}){unfinished}; never overwritten: "
            "set another hydra.run.dir"
        )


def _run_follower(cfg: DictConfig, context: RunContext) -> dict:
    """A launch's process other than rank 0: the same job (its share of each batch; the collectives are the
    algorithm's), with a tracker that writes nothing and no config, summary or pointer of its own."""
    resume = cfg.get("resume") not in (None, "null")
    costs.reset()  # its tokens and episodes join rank 0's (rlhf/run/costs.py)
    module, settings = check_config(cfg)
    with handle_stop_signals():
        job = build_job(cfg, context.run_dir, job_type=cfg.algo.name, group=cfg.algo.name, tags=[], resume=resume,
                        writes=False)  # fmt: skip
        seed_everything(cfg.seed)
        return module.train(job, settings)


def _save_config(cfg: DictConfig, run_dir: Path, overrides: list[str] | None) -> None:
    """.hydra/config.yaml, resolved (the contract; Hydra would save interpolations unresolved, and is told not
    to write: conf/hydra/default.yaml), and for a new run its overrides, as Hydra's overrides.yaml."""
    (run_dir / CONFIG).parent.mkdir(parents=True, exist_ok=True)
    # Atomic: a kill mid-write must leave the old config, which a resume reads, not an empty file.
    write_text_atomic(run_dir / CONFIG, resolved_yaml(cfg))  # reloads to the same values (escapes kept)
    if overrides is not None:
        write_text_atomic(run_dir / OVERRIDES, OmegaConf.to_yaml(OmegaConf.create(list(overrides))))


def _run_locked(cfg: DictConfig, context: RunContext, resume: bool) -> dict:
    run_dir = context.run_dir
    # A resumed run changes its directory only once its checkpoint is loaded: a resume that fails before
    # (a bad override, a signal while loading) leaves the config, metrics and summary as they were.
    committed = not resume
    if resume and (removed := remove_temporaries(run_dir)):
        log.info("removed what a killed write left: %s", ", ".join(removed))

    def on_resumed(step: int, metrics_rows: int | None) -> None:
        nonlocal committed
        dropped = truncate_metrics(run_dir / METRICS, step, metrics_rows)
        _save_config(cfg, run_dir, None)
        committed = True
        log.info("resumed at step %d; dropped %d metric rows logged after it", step, dropped)

    started = time.time()
    costs.reset()  # phase seconds, tokens and episodes of this run: into the summary (rlhf/run/costs.py)
    reset_peaks()  # this run's peak memory, not the multirun process's so far
    summary = {
        "algo": cfg.algo.name,
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "status": "running",
        "resumed": resume,
    }
    job = None
    latest_failure = None
    # Signals are handled from the start: one that comes while the model or the data load stops the run
    # cleanly before its first step (a second Ctrl-C stops at once), never with a traceback.
    with handle_stop_signals() as stop:
        try:
            with costs.phase("setup"):
                if committed:
                    _save_config(cfg, run_dir, context.overrides)
                module, settings = check_config(cfg)
                job = build_job(
                    cfg,
                    run_dir,
                    job_type=cfg.algo.name,
                    group=context.sweep_name or cfg.algo.name,
                    tags=[str(t) for t in cfg.tags] + override_labels(context.override_tags),
                    name=run_name(cfg.algo.name, context.override_tags),
                    resume=resume,
                    on_resumed=on_resumed,
                )
            summary["precision"] = job.hardware.precision()  # what hardware=auto picked, and why
            data = job.data
            summary.update(train_rows=len(data.train), test_rows=len(data.test), dropped_rows=dict(data.dropped))
            log.info(
                "data %s: %d train, %d test, dropped %s",
                data.source,
                len(data.train),
                len(data.test),
                dict(data.dropped),
            )
            if stop.requested:
                raise stop.interrupted(run_dir, None, None)
            # Seeded last: building a missing model (tiny_llama, the GGUF conversion) draws random numbers,
            # and a run must not depend on whether the model cache existed.
            seed_everything(cfg.seed)
            metrics = module.train(job, settings)
            summary.update(metrics, status="finished")
            # The pointer before summary.json: killed in between, the run has no summary, so resume= finishes it
            # (it only evaluates and saves) and the pointer is right; the other order would leave a finished run
            # that nothing points at and that no resume would touch.
            with costs.phase("final_save"):
                latest_failure = _point_latest(Path(cfg.outputs_root), cfg.algo.name, run_dir, summary)
                _log_model(job, cfg.algo.name, summary)
        except Interrupted as err:
            summary.update(status="interrupted", error=str(err), exit_code=err.exit_code)
            raise
        except KeyboardInterrupt:
            hint = (f"resume with: {resume_command(run_dir)}" if has_complete_checkpoint(run_dir)
                    else "it has no checkpoint yet, so nothing can be resumed: run the same command again")  # fmt: skip
            err = Interrupted(f"stopped at once by a second Ctrl-C; {hint}", 2)
            summary.update(status="interrupted", error=str(err), exit_code=err.exit_code)
            raise err from None
        except OSError as err:
            failure = storage_error(err, run_dir)
            if failure is None:
                summary.update(
                    status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(20)
                )
                raise
            summary.update(status="failed", error=str(failure))
            raise failure from err
        except BaseException as err:
            summary.update(status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(20))
            raise
        finally:
            wall_time_s = time.time() - started
            summary.update(wall_time_s=round(wall_time_s, 2), peak_rss_mb=round(peak_rss_mb(), 1))
            summary.update(costs.current().totals(wall_time_s))  # episodes: this process's (a resume's own)
            if (cuda_mb := peak_cuda_mb()) is not None:
                summary["peak_cuda_mb"] = cuda_mb
            if committed:
                _write_summary(run_dir, summary)
            if job is not None:
                job.tracker.set_summary(summary)
                job.tracker.finish(exit_code=0 if summary["status"] == "finished" else 1)
    if latest_failure is not None:
        raise latest_failure
    return summary


def _log_model(job: Job, algo: str, summary: dict) -> None:
    """The final adapter as a W&B model artifact; its name goes into the summary, where evaluate.py finds it."""
    name = job.tracker.log_model(job.adapter_dir, algo, summary)
    if name is not None:
        summary["wandb_artifact"] = name


def storage_error(err: OSError, run_dir: Path) -> StorageError | None:
    """The one-line error for a full or read-only disk (or missing permissions), or None for other OS errors."""
    if err.errno not in STORAGE_ERRNOS:
        return None
    where = err.filename or run_dir
    return StorageError(
        f"{where}: {err.strerror}: the run stopped; free some disk space or make it writable (or set outputs_root / "
        f"hydra.run.dir elsewhere), then resume=<run dir> continues from the newest checkpoint in {run_dir}"
    )


def _write_summary(run_dir: Path, summary: dict) -> None:
    """summary.json; on a full or read-only disk a log line instead (the error that stopped the run goes on)."""
    try:
        write_json_atomic(run_dir / SUMMARY, summary)
    except OSError as err:
        log.error("could not write %s (%s); the run's status was %s", run_dir / SUMMARY, err, summary["status"])


def _point_latest(outputs_root: Path, algo: str, run_dir: Path, summary: dict) -> StorageError | None:
    """Switch outputs/latest/<algo> to the finished run; if that folder cannot be written, the one-line error to
    raise once summary.json is written (it keeps ``finished`` and adds ``latest_error``)."""
    try:
        point_latest(outputs_root, algo, run_dir)
    except OSError as err:
        summary["latest_error"] = f"{type(err).__name__}: {err}"
        return StorageError(
            f"the run finished in {run_dir}, but {outputs_root / 'latest' / algo} could not point at it "
            f"({err.strerror}): make {outputs_root / 'latest'} writable; meanwhile give later stages the run "
            "directory itself"
        )
    return None
