"""Peak memory of PPO with one shared base (algo.share_base=true) vs a model per role (false).

Runs a few PPO iterations twice, each in its own process (`train.py algo=ppo ...`), reads
``peak_rss_mb`` from each run's summary.json, and prints both and the ratio (target <= 0.5).
The runs go to a temporary outputs root, so outputs/latest/ppo is left alone.

    python bench/ppo_memory.py                                   # defaults: SmolLM2-135M, outputs/latest/rm
    python bench/ppo_memory.py --micro-batch 8                   # activations as in the default training run
    python bench/ppo_memory.py --iterations 3 algo.batch_size=8  # extra arguments are Hydra overrides

The default micro batch of 2 keeps activations small, so the numbers show what the role layout
costs, as on a 7B model where weights dominate; on a 135M model activations of a micro batch of 8
are several times the weights and shrink the ratio's room. Peak RSS includes the interpreter,
torch and the data (~0.6 GB on their own); report the allocator with the numbers
(LD_PRELOAD=jemalloc changes them, see STACK-NOTES.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(share_base: bool, args: argparse.Namespace, outputs_root: Path) -> dict:
    run_dir = outputs_root / f"share_base_{str(share_base).lower()}"
    command = [
        sys.executable, str(REPO / "train.py"),
        "algo=ppo",
        f"algo.share_base={str(share_base).lower()}",
        f"algo.reward_model={args.reward_model}",
        f"algo.iterations={args.iterations}",
        f"algo.eval_prompts={args.eval_prompts}",
        f"hardware.micro_batch_size={args.micro_batch}",
        "logger=none",
        f"outputs_root={outputs_root}",
        f"hydra.run.dir={run_dir}",
        *args.overrides,
    ]
    started = time.time()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"share_base={share_base}: train.py exited with {done.returncode}")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["bench_wall_s"] = time.time() - started
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2, help="PPO iterations per run (default 2)")
    parser.add_argument("--eval-prompts", type=int, default=8, help="held-out prompts evaluated at start and end (default 8)")
    parser.add_argument("--micro-batch", type=int, default=2, help="hardware.micro_batch_size (default 2)")
    parser.add_argument("--reward-model", default=str(REPO / "outputs" / "latest" / "rm"), help="rm run directory")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to both runs, e.g. algo.batch_size=8")
    args = parser.parse_args()
    args.reward_model = str(Path(args.reward_model).resolve())
    allocator = os.environ.get("LD_PRELOAD") or "glibc malloc"

    with tempfile.TemporaryDirectory(prefix="ppo-memory-") as tmp:
        results = {share: run(share, args, Path(tmp)) for share in (True, False)}
    print(f"PPO peak memory, {args.iterations} iterations, model={results[True]['model']}, micro batch {args.micro_batch}, "
          f"overrides {args.overrides or 'none'}, allocator: {allocator}")
    for share, summary in results.items():
        print(f"  share_base={str(share).lower():5s}  peak RSS {summary['peak_rss_mb']:8.1f} MB   run {summary['wall_time_s']:6.1f} s")
    ratio = results[True]["peak_rss_mb"] / results[False]["peak_rss_mb"]
    print(f"  ratio shared / separate: {ratio:.2f}  (target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
