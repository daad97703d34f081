"""What a multirun job tells its sweeper: the value of the optimised metric, or "no result" for a failed job
(so Optuna marks the trial failed and runs on), and the direction of that metric for the sweep presets."""

from __future__ import annotations

import logging
import math
import sys

from omegaconf import OmegaConf

from rlhf.errors import ConfigError
from rlhf.run.directions import direction

log = logging.getLogger(__name__)


def sweep_direction(metric: str) -> str:
    """``${direction:${optimized_metric}}`` in a sweep preset: "minimize" for a loss, "maximize" for an accuracy
    or a score (rlhf/run/directions.py). A metric it cannot place is one error line that names the fix, not the
    traceback of the sweeper's instantiation."""
    try:
        return direction(metric)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def register_direction_resolver() -> None:
    """``${direction:...}`` for the config; call it before Hydra composes (train.py does at import)."""
    if not OmegaConf.has_resolver("direction"):
        OmegaConf.register_new_resolver("direction", sweep_direction)


# What a multirun job returns when it has no result (it failed, or never started). Not NaN: Optuna refuses a
# NaN, the sweeper's fallback then raises and the study stops at its first failed trial. None is not
# float-castable, so the sweeper tells Optuna the trial FAILED and asks for the next one.
NO_RESULT = None


def sweep_value(summary: dict, metric: str) -> float | None:
    """The job's value for a sweeper: ``summary[metric]``, or NO_RESULT when it is missing or not finite
    (a NaN eval loss would stop an Optuna study as a NaN return does; as a failed trial it runs on)."""
    value = summary.get(metric)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    log.warning("%s is %r, not a finite number: a sweeper reads this job as a failed trial", metric, value)
    return NO_RESULT
