"""Will this fit? Predicted peak device memory of each phase of a run, from the config alone.

No weights load and the hub is never reached: the architecture comes from a local config (rlhf/plan/architecture.py),
the bytes from formulas of the shapes (rlhf/plan/memory.py), per phase of each algorithm (rlhf/plan/phases.py),
checked against hardware.memory_gib (rlhf/plan/fits.py). ``python -m rlhf.plan <train.py overrides>`` prints it
(rlhf/plan/report.py, rlhf/plan/cli.py); train.py asks :func:`check_fits` before the weights load.
Measured against real peaks in bench/plan_check.py (BENCHMARKS.md, "Memory planner").
"""

from rlhf.plan.fits import Plan, check_fits, plan

__all__ = ["Plan", "check_fits", "plan"]
