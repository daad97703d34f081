"""One run per launch: `torchrun --nproc_per_node 2 train.py ...` on CPU (real DDP over gloo) makes one run
directory, one summary, one W&B run and one latest pointer, and trains what one process trains with the same
global batch and seed (rm, sft, dpo: the final adapter within float tolerance)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf.config import HardwareSettings
from rlhf.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# Global batch 4 (debug=tiny): one process takes micro batches of 4; two take 2 each, their gradients averaged.
TINY = ["debug=tiny", "algo.max_steps=4", "lora.dropout=0"]


# Every process of these launches runs tests/collective_guard: no collective outside rlhf.run.distributed.
GUARDED = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO / "tests" / "collective_guard"), os.environ.get("PYTHONPATH")])
    ),
}


def train(outputs: Path, algo: str, *extra: str, processes: int = 1, check: bool = True):
    env = {**GUARDED, "WANDB_MODE": "offline"}
    launcher = TORCHRUN if processes == 2 else [sys.executable]
    result = subprocess.run(
        [*launcher, "train.py", f"algo={algo}", *TINY, f"outputs_root={outputs}", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        relevant = [line for line in result.stderr.splitlines() if "rank1" in line or "Error" in line]
        assert result.returncode == 0, "\n".join(relevant)[-4000:]
    return result


def adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def test_the_global_batch_is_split_among_the_processes():
    hardware = HardwareSettings("cpu", "float32", False, False, False, "adamw_torch", 8, None, None, "auto")
    assert hardware.accumulation_steps(32, "algo.batch_size", processes=2) == (8, 2)
    assert hardware.accumulation_steps(4, "algo.batch_size", processes=2) == (2, 1)
    with pytest.raises(ConfigError, match=r"algo.batch_size=5 is not divisible by the launch's 2 processes"):
        hardware.accumulation_steps(5, "algo.batch_size", processes=2)
    with pytest.raises(ConfigError, match=r"algo.batch_size=20 \(10 per process\).*micro_batch_size=8"):
        hardware.accumulation_steps(20, "algo.batch_size", processes=2)


def check_one_run(outputs: Path, algo: str) -> Path:
    runs = list((outputs / algo).iterdir())
    assert len(runs) == 1, runs  # one directory for the launch, not one per process
    run_dir = runs[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1  # one W&B run
    assert (outputs / "latest" / algo).resolve() == run_dir.resolve()
    assert [p.name for p in (outputs / "latest").iterdir()] == [algo]  # no pointer left half switched
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [s for s in steps if s < 4] == [1, 2, 3]  # each step logged once, by rank 0
    return run_dir


@pytest.mark.parametrize("algo", ["rm", pytest.param("sft", marks=pytest.mark.slow), "dpo"])
def test_two_processes_make_one_run_that_trains_as_one_process(algo, tmp_path):
    """rm and dpo in the default suite (~40 s each), sft in the slow one."""
    two, one = tmp_path / "two", tmp_path / "one"
    train(two, algo, "logger=wandb", processes=2)
    train(one, algo)
    run_dir = check_one_run(two, algo)
    expected, got = adapter(next((one / algo).iterdir())), adapter(run_dir)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_run_that_rank_0_refuses_stops_every_process(tmp_path):
    """A run directory that already holds a run: rank 0 prints one error line, the other process stops too."""
    run_dir = tmp_path / "taken"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text('{"status": "finished"}')
    result = train(tmp_path, "rm", f"hydra.run.dir={run_dir}", processes=2, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "already holds a run" in errors[0], result.stderr[-2000:]
    assert json.loads((run_dir / "summary.json").read_text()) == {"status": "finished"}
    assert not {".hydra", "metrics.jsonl", "checkpoints"} & {p.name for p in run_dir.iterdir()}


@pytest.fixture(scope="module")
def rm_outputs(tmp_path_factory) -> Path:
    """An outputs root with a finished tiny rm run at latest/rm."""
    outputs = tmp_path_factory.mktemp("outputs")
    train(outputs, "rm")
    return outputs


def test_a_ppo_update_does_not_depend_on_the_processes_or_the_micro_batch(rm_outputs, tmp_path):
    """The same rollout, its responses 1 to 16 tokens long, updated whole in one process with one micro batch per
    minibatch (the reference), in micro batches of 1 and 2, and split over two processes: the same weights after
    the iteration (the loss is the minibatch's token mean; score and advantage whitening, the KL controller and
    the minibatches are the whole batch's). A micro batch's mean weighted by its rows would move them apart."""
    one, two = tmp_path / "one", tmp_path / "two"
    for out, launcher, micro_sizes in ((one, [sys.executable], ["4", "1", "2"]), (two, TORCHRUN, ["2", "1"])):
        out.mkdir()
        result = subprocess.run(
            [*launcher, "tests/run/ppo_update_check.py", str(rm_outputs), str(out), *micro_sizes],
            cwd=REPO,
            env=GUARDED,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    reference = load_file(one / "micro4" / "weights.safetensors")
    start = load_file(one / "start.safetensors")
    assert any(not torch.allclose(start[name], reference[name]) for name in reference)  # the update moved them
    metrics_one = json.loads((one / "micro4" / "metrics.json").read_text())
    for split in (one / "micro1", one / "micro2", two / "micro2", two / "micro1"):
        got = load_file(split / "weights.safetensors")
        assert reference.keys() == got.keys() and len(reference) > 0
        for name in reference:
            torch.testing.assert_close(
                got[name], reference[name], rtol=1e-4, atol=1e-6, msg=f"{split.parent.name}/{split.name}: {name}"
            )
        metrics = json.loads((split / "metrics.json").read_text())
        for key in ("objective/kl", "objective/scores"):
            assert metrics[key] == pytest.approx(metrics_one[key], rel=1e-4, abs=1e-6), key


# 4 iterations, a checkpoint every 2, sampled evaluation in chunks of 2 prompts (so both processes answer some).
PPO_RUN = ["algo=ppo", "debug=tiny", "algo.iterations=4", "algo.save_every=2", "algo.rollout_chunk_size=2"]


def launch(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    launcher = TORCHRUN if processes == 2 else [sys.executable]
    return subprocess.run(
        [*launcher, *args], cwd=REPO, env=GUARDED, capture_output=True, text=True, timeout=600
    )  # fmt: skip


def logged(run_dir: Path) -> dict[int, dict]:
    return {row["step"]: row for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


@pytest.mark.slow
@pytest.mark.parametrize("resume_processes", [2, 1])
def test_a_killed_two_process_ppo_run_resumes(rm_outputs, tmp_path, resume_processes):
    """SIGKILL (rank 0, right after its first checkpoint is published): resume=<run dir> on 2 processes or on 1
    finishes the run with every iteration logged once; on 2 processes its iterations after the resume are those
    of the uninterrupted 2-process run (each process's RNG stream is saved and restored), and so is its adapter."""
    run_dir = tmp_path / "ppo"
    killed = launch("tests/kill_at.py", "publish_replace:1:after", *PPO_RUN, f"outputs_root={rm_outputs}",
                    f"hydra.run.dir={run_dir}")  # fmt: skip
    assert killed.returncode != 0 and "SIGKILL at publish_replace" in killed.stderr, killed.stderr[-2000:]
    assert not (run_dir / "summary.json").exists()
    saved = torch.load(run_dir / "checkpoints" / "step-000002" / "state.pt", weights_only=True)["rng"]
    assert len(saved) == 2 and not torch.equal(saved[0]["torch"], saved[1]["torch"])  # each process its own stream
    resumed = launch("train.py", f"resume={run_dir}", processes=resume_processes)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    rows = logged(run_dir)
    assert [step for step, row in sorted(rows.items()) if "objective/kl" in row] == [1, 2, 3, 4]
    if resume_processes == 1:
        return
    straight_dir = tmp_path / "straight"
    straight = launch("train.py", *PPO_RUN, f"outputs_root={rm_outputs}", f"hydra.run.dir={straight_dir}")
    assert straight.returncode == 0, straight.stderr[-3000:]
    expected = logged(straight_dir)
    for step in (3, 4):
        for key in ("objective/scores", "objective/kl", "loss/policy", "loss/value", "response/length"):
            assert rows[step][key] == pytest.approx(expected[step][key], rel=1e-5, abs=1e-7), (step, key)
    got, want = adapter(run_dir), adapter(straight_dir)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7, msg=name)


def test_fewer_evaluation_prompts_than_processes_and_the_same_evaluation_as_one_process(rm_outputs, tmp_path):
    """One held-out prompt and one sentinel prompt on two processes: the run finishes (the second process has no
    chunk to answer), and its start evaluation is the one-process run's (chunks are seeded by their index)."""
    args = [*PPO_RUN, "algo.iterations=1", "algo.eval_prompts=1", "algo.sentinel_prompts=1",
            f"outputs_root={rm_outputs}"]  # fmt: skip
    two = launch("train.py", *args, f"hydra.run.dir={tmp_path / 'two'}")
    assert two.returncode == 0, two.stderr[-3000:]
    one = launch("train.py", *args, f"hydra.run.dir={tmp_path / 'one'}", processes=1)
    assert one.returncode == 0, one.stderr[-3000:]
    start_two, start_one = logged(tmp_path / "two")[0], logged(tmp_path / "one")[0]
    assert start_two.keys() == start_one.keys() and "eval/rm_score" in start_one
    for key in start_one:
        if key.startswith("eval/"):
            assert start_two[key] == pytest.approx(start_one[key], rel=1e-5, abs=1e-7), key


def test_a_slurm_job_of_several_tasks_is_one_launch(monkeypatch):
    """hydra-submitit-launcher's tasks get torch's env:// variables from SLURM's (submitit's helper)."""
    from rlhf.run import distributed

    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
             "SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "gpu[01-02]", "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1",
             "SLURM_STEP_NODELIST": "gpu[01-02]"}  # fmt: skip
    # A copy of the environment: the helper writes os.environ itself, and RANK / WORLD_SIZE left behind would
    # make every later test in this process a follower of a launch that does not exist.
    launch = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")
    environ = {k: v for k, v in os.environ.items() if k not in launch}
    monkeypatch.setattr(os, "environ", {**environ, **slurm})
    distributed.adopt_slurm_tasks()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("3", "4", "1")
    assert os.environ["MASTER_ADDR"] == "gpu01" and distributed.world_size() == 4 and not distributed.is_main()
