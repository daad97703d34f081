"""Cost accounting under `torchrun --nproc_per_node 2` (rlhf/run/costs.py): tokens and episodes are the launch's,
summed over the processes where training ends, so two processes report what one reports for the same run."""

import json
import os
import subprocess

import pytest

from tests.run.test_distributed import REPO, TORCHRUN, train


def summary(outputs, algo) -> dict:
    (run_dir,) = (outputs / algo).iterdir()
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_two_processes_count_what_one_counts(tmp_path):
    """~2 minutes: rm on one and on two processes (the same batches: the same tokens), then PPO on two."""
    one, two = tmp_path / "one", tmp_path / "two"
    train(one, "rm")
    train(two, "rm", processes=2)
    expected, got = summary(one, "rm"), summary(two, "rm")
    for key in ("tokens_forwarded", "tokens_backpropagated", "episodes"):
        assert got[key] == expected[key] > 0, key
    assert set(got["phase_seconds"]) >= {"setup", "load_model", "training", "evaluation", "final_save", "other"}

    # PPO (no algo.max_steps: train() above passes it) scores with the two-process rm run (latest/rm)
    command = [*TORCHRUN, "train.py", "algo=ppo", "debug=tiny", f"outputs_root={two}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = summary(two, "ppo")
    assert record["episodes"] == 2 * 4  # 2 iterations of 4 prompts, 2 rolled out by each process
    assert record["tokens_forwarded"] > record["tokens_backpropagated"] > 0
