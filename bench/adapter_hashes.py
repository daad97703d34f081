"""Fingerprint what the algorithms train: tiny rm, sft, dpo and ppo runs with a fixed seed, and the sha256 of
every adapter file they save. Run it on two commits (same machine) to show a refactor left training
bit-identical:

    python -m bench.adapter_hashes /tmp/before      # on the old commit
    python -m bench.adapter_hashes /tmp/after       # on the new one
    diff /tmp/before/hashes.txt /tmp/after/hashes.txt

Extra arguments are Hydra overrides for every run (e.g. ``seed=3``). Runs use ``debug=tiny`` (seconds each).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from rlhf.modeling.fingerprints import file_sha256

REPO = Path(__file__).resolve().parents[1]
RUNS = {
    "rm": ["algo=rm"],
    "sft": ["algo=sft"],
    "dpo": ["algo=dpo"],
    "ppo": ["algo=ppo", "algo.iterations=2"],
    "ppo_value_on_policy": ["algo=ppo", "algo.iterations=2", "algo.value_model=policy"],
}


def adapter_hashes(out: Path) -> list[str]:
    """``<sha256>  <path>`` for every safetensors file under the runs' adapter/ folders (not checkpoints)."""
    files = sorted(p for p in out.rglob("*.safetensors") if "adapter" in p.parts and "checkpoints" not in p.parts)
    return [f"{file_sha256(p)}  {p.relative_to(out)}" for p in files]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.adapter_hashes", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="an empty (or disposable) directory for the runs and hashes.txt")
    args, overrides = parser.parse_known_args(argv)
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    for name, algo in RUNS.items():
        command = [
            sys.executable,
            "train.py",
            "debug=tiny",
            "seed=3",
            f"outputs_root={out}",
            f"hydra.run.dir={out / name}",
        ]
        with open(out / f"{name}.log", "w", encoding="utf-8") as log:
            subprocess.run(
                [*command, *algo, *overrides], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, check=True
            )
    lines = adapter_hashes(out)
    (out / "hashes.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
