"""Train a reward model, a judge, or an SFT, DPO, PPO, GRPO or RLOO policy (the options of conf/algo/):
`python train.py algo=rm|judge|sft|dpo|ppo|grpo|rloo [overrides]`; continue a stopped run with
`python train.py resume=<run dir>|latest`."""

from rlhf.run.allocator import restart_with_jemalloc

if __name__ == "__main__":
    restart_with_jemalloc()  # first, before torch loads (rlhf/run/allocator.py)

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rlhf.errors import RlhfError
from rlhf.experiment import RunContext, run_experiment
from rlhf.run import distributed
from rlhf.run.hydra_callbacks import report_unfinished_sweep
from rlhf.run.resume import rewrite_resume_args
from rlhf.run.stopping import Interrupted
from rlhf.run.sweeps import NO_RESULT, register_direction_resolver, sweep_value

log = logging.getLogger("train")
register_direction_resolver()  # before Hydra composes a sweep preset that uses ${direction:...}


def run_context(hydra_cfg) -> RunContext:
    """Where this job writes and how W&B groups it: a sweep's jobs share a group named after the sweep."""
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = list(hydra_cfg.overrides.task)
    return RunContext(
        run_dir=Path(hydra_cfg.runtime.output_dir),
        sweep_name=Path(hydra_cfg.sweep.dir).name if multirun else None,
        override_tags=[o for o in overrides if not o.startswith(("hydra.", "logger."))],
        overrides=overrides,
    )


# A signal that stops one job of a -m sweep stops the sweep: the jobs after it do not start.
_sweep_stopped: Interrupted | None = None


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    global _sweep_stopped
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun and _sweep_stopped is not None:
        print(f"job {hydra_cfg.job.num} not started: the sweep was stopped by a signal", file=sys.stderr, flush=True)
        return NO_RESULT
    distributed.adopt_slurm_tasks()  # a SLURM sweep job of several tasks: one launch, as under torchrun
    context = run_context(hydra_cfg)
    distributed.quiet_followers()
    if distributed.is_main():
        print(f"run directory: {context.run_dir}", flush=True)
    try:
        summary = run_experiment(cfg, context)
    except distributed.FollowerStopped:
        sys.exit(2)  # rank 0 refused the run and says why
    except Exception as err:
        if isinstance(err, Interrupted):
            # A clean stop on SIGTERM / SIGINT: the checkpoint is saved, the message says how to resume.
            print(f"stopped: {err}", file=sys.stderr, flush=True)
            if multirun:  # the sweep's callback exits with 128 + signal once Hydra has closed the sweep
                _sweep_stopped = err
                return NO_RESULT
            sys.exit(err.exit_code)
        if multirun:
            # One failed job must not stop the sweep: its summary.json records the error, the rest run on.
            print(f"error: job {hydra_cfg.job.num} failed: {err}", file=sys.stderr, flush=True)
            return NO_RESULT  # what the Optuna sweeper marks as a failed trial
        if isinstance(err, RlhfError):
            # A user error: one line that names the bad value and the fix, no traceback.
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise
    log.info("finished: %s", {k: v for k, v in summary.items() if k.startswith("eval_")})
    return sweep_value(summary, cfg.optimized_metric) if multirun else None


def cli() -> None:
    try:
        # resume=<run dir>: Hydra must load that run's config and directory. Under torchrun / accelerate launch
        # rank 0 decides it, and the run directory's timestamp, for every process (one run per launch).
        sys.argv = distributed.agree_on_launch(sys.argv, rewrite_resume_args)
    except RlhfError as err:
        if distributed.is_main():
            print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    try:
        main()
    except BaseException as stop:
        # A sweeper that raised after its jobs ran (Optuna when no trial finished: there is no best trial)
        # skips Hydra's end-of-sweep callback: the sweep's line still counts the jobs.
        code = report_unfinished_sweep()
        if code is None or not isinstance(stop, SystemExit):
            raise
        sys.exit(code or stop.code)


if __name__ == "__main__":
    cli()
