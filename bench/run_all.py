"""`make bench`: the machine's fp32 peak, rm / DPO steps against TRL directly, PPO iterations by phase.

    python -m bench.run_all                                         # the defaults (SmolLM2-135M): ~25-35 min, 2 cores
    python -m bench.run_all --repeats 1 --steps 3 --iterations 2 debug=tiny         # smoke test, ~2 min
    python -m bench.run_all --only ppo --peer-python PEER/bin/python          # what make bench-peer adds

Runs bench/machine.py, bench/trainer_steps.py and bench/ppo_iteration.py in turn (each configuration in
its own process), prints their tables, and merges their sections into
bench/results/<YYYY-MM-DD>-<hostname>-<boot id>.json. Extra arguments are Hydra overrides for every run.
"""

from __future__ import annotations

import argparse
import time

from bench import common, machine, ppo_iteration, trainer_steps

PARTS = ("machine", "steps", "ppo")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run_all",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (default 3)")
    parser.add_argument(
        "--steps", type=int, default=6, help="rm / DPO optimizer steps per run, first not counted (default 6)"
    )
    parser.add_argument(
        "--iterations", type=int, default=4, help="PPO iterations per run, first not counted (default 4)"
    )
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts to run, of: {', '.join(PARTS)} (default all)"
    )
    parser.add_argument(
        "--peer-python", default=None, help="also run TRL 1.12's PPOTrainer with this python (make bench-peer)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary run directories and logs")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. model=tiny_llama")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    if sorted(set(parts) - set(PARTS)):
        parser.error(f"unknown --only {sorted(set(parts) - set(PARTS))}: valid are {', '.join(PARTS)}")
    keep = ["--keep"] if args.keep else []
    started = time.time()

    peak = None
    if "machine" in parts:
        peak = machine.main([])["fp32_matmul_gflops"]
        print()
    if "steps" in parts:
        peak_args = ["--peak-gflops", str(peak)] if peak else []
        trainer_steps.main(
            ["--repeats", str(args.repeats), "--steps", str(args.steps), *peak_args, *keep, *args.overrides]
        )
        print()
    if "ppo" in parts:
        peer = ["--peer-python", args.peer_python] if args.peer_python else []
        ppo_iteration.main(
            ["--repeats", str(args.repeats), "--iterations", str(args.iterations), *peer, *keep, *args.overrides]
        )
    print(f"\nbenchmark finished in {(time.time() - started) / 60:.1f} min; results in {common.results_path()}")


if __name__ == "__main__":
    main()
