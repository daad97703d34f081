"""Peak memory of PPO with one shared base (algo.share_base=true) vs a model per role (false).

Kept for its old command line; the measurement now lives in bench/ppo_iteration.py (which also times
the phases and compares with TRL 1.12's PPOTrainer). This runs it once, with the small micro batch that
shows what the role layout costs, as on a 7B model where weights dominate:

    python bench/ppo_memory.py                                    # = ppo_iteration.py --repeats 1 --configs shared,separate hardware.micro_batch_size=2
    python bench/ppo_memory.py --micro-batch 8 --iterations 3 algo.batch_size=8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root, for bench and rlhf

from bench import ppo_iteration  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2, help="PPO iterations per run (default 2)")
    parser.add_argument("--micro-batch", type=int, default=2, help="hardware.micro_batch_size (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each layout (default 1)")
    parser.add_argument("--reward-model", default=None, help="rm run directory (default: a short one trained for the benchmark)")
    parser.add_argument("--section", default="ppo_memory", help="section of the results file (default ppo_memory)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to both runs, e.g. algo.batch_size=8")
    args = parser.parse_args()
    rm = ["--reward-model", args.reward_model] if args.reward_model else []
    ppo_iteration.main(["--repeats", str(args.repeats), "--iterations", str(args.iterations), "--configs", "shared,separate", *rm, "--section", args.section,
                        f"hardware.micro_batch_size={args.micro_batch}", *args.overrides])


if __name__ == "__main__":
    main()
