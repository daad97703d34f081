"""RLOO (TRL's RLOOTrainer) on a tiny Llama against a tiny reward model: TRL's leave-one-out advantages of a known
reward through our reward function, the run directory, resume after SIGKILL, a clean SIGTERM, the error lines.

The machinery RLOO shares with GRPO (rlhf/algos/online_trl.py: scoring as PPO, the prompt cut, the reference,
the held-out evaluation) is tested in tests/algos/test_grpo.py."""

import json
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from rlhf.algos import online_trl, rloo
from rlhf.config import from_node
from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from tests.algos.helpers import make_job, metric_rows, rm_outputs
from tests.conftest import REPO, compose_train, tiny_overrides

RUN = {"algo.max_steps": "4", "algo.save_every": "2", "algo.keep_checkpoints": "2"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return rm_outputs(tmp_path_factory)


def rloo_overrides(**extra: str) -> list[str]:
    """A tiny RLOO run (conf/debug/algo/tiny_rloo.yaml): 4 rollouts of 2 prompts x 2 completions, 8 new tokens."""
    return tiny_overrides(algo="rloo", **extra)


def setup(outputs, tmp_path, **extra):
    cfg = compose_train(rloo_overrides(**extra), outputs_root=outputs)
    job = make_job(cfg, tmp_path / "run")
    return job, from_node(rloo.Settings, cfg.algo, "algo")


def train_steps(run_dir) -> list[int]:
    return [r["step"] for r in metric_rows(run_dir) if "loss" in r]


def train_py(args: list[str], wrapper: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *(wrapper or ["train.py"]), *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def straight_run(outputs, tmp_path_factory):
    """A 4-step run through run_experiment, checkpointing every 2 steps: (run dir, summary)."""
    run_dir = tmp_path_factory.mktemp("straight") / "rloo"
    return run_dir, run_experiment(compose_train(rloo_overrides(**RUN), outputs_root=outputs), run_dir)


class KnownScores:
    """A stand-in reward model: the given scores, in the order the conversations come."""

    def __init__(self, scores):
        self.scores = torch.tensor(scores, dtype=torch.float32)

    def __call__(self, conversations, batch_size=None, max_length=None):
        return self.scores[: len(conversations)].clone()


@pytest.mark.parametrize("normalize", [False, True])
def test_advantages_are_leave_one_out(outputs, tmp_path, normalize):
    """A known score per completion, through our reward function (missing-EOS penalty included), gives TRL's
    RLOO advantages: R_i minus the mean of the other rewards of its prompt. The sequence KL term is 0 here: a fresh
    adapter (B = 0) is the reference exactly."""
    job, settings = setup(
        outputs,
        tmp_path,
        **{"algo.batch_size": "8", "algo.num_generations": "4", "algo.normalize_advantages": str(normalize).lower()},
    )
    assert settings.beta == 0.05
    known = [1.0, 2.0, 4.0, 8.0, -3.0, 0.5, 0.5, 6.0]
    function = online_trl.RewardFunction(KnownScores(known), job.tokenizer.eos_token_id, 1.0, with_gold=False)
    trainer = online_trl.make_trainer(
        job,
        settings,
        online_trl.build_policy(job, None),
        function,
        rloo.RLOOTrainer,
        rloo.RLOOConfig,
        rloo.algo_args(settings),
    )
    prompts = [job.data.train[0]["prompt"]] * 4 + [job.data.train[1]["prompt"]] * 4  # as TRL's sampler groups them
    out = trainer._generate_and_score_completions([{"prompt": p} for p in prompts])

    ids, mask = out["completion_ids"], out["completion_mask"].bool()
    has_eos = torch.stack([row[m][-1] for row, m in zip(ids, mask)]) == job.tokenizer.eos_token_id
    rewards = (torch.tensor(known) - 1.0 * (~has_eos).float()).view(2, 4)
    baseline = (rewards.sum(1, keepdim=True) - rewards) / 3  # the other three of the group
    expected = (rewards - baseline).view(-1)
    if normalize:
        expected = (expected - expected.mean()) / (expected.std(unbiased=True) + 1e-4)
    assert torch.allclose(out["advantages"], expected, atol=1e-5)


def test_run_writes_the_run_directory(outputs, straight_run):
    run_dir, summary = straight_run
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["algo"] == "rloo" and summary["status"] == "finished"
    for key in ("rm_score", "gold_score", "kl", "length", "eos_rate"):  # PPO's start / final keys
        assert isinstance(on_disk[f"{key}_start"], float) and isinstance(on_disk[f"{key}_final"], float), key
    assert (on_disk["train_steps"], on_disk["episodes"], on_disk["eval_prompts"]) == (4, 16, 4)
    rows = metric_rows(run_dir)
    assert train_steps(run_dir) == [1, 2, 3, 4]
    assert [r["step"] for r in rows if "eval/rm_score" in r] == [0, 4]
    for key in ("reward", "objective/scores", "objective/gold_score", "response/eos_rate", "kl", "entropy"):
        assert all(key in r for r in rows if "loss" in r), key
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert any("lora_B" in n and w.abs().max() > 0 for n, w in weights.items())  # LoRA starts with B = 0
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (outputs / "latest" / "rloo").resolve() == run_dir.resolve()


@pytest.mark.slow
def test_sigkill_then_resume_matches_the_straight_run(outputs, straight_run, tmp_path):
    run_dir = tmp_path / "killed"
    args = [*rloo_overrides(**RUN), f"outputs_root={outputs}", f"hydra.run.dir={run_dir}"]
    killed = train_py(args, wrapper=["tests/signal_at_step.py", "SIGKILL", "3"])  # the newest checkpoint: step 2
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert train_steps(run_dir) == [1, 2, 3] and not (run_dir / "summary.json").exists()

    resumed = train_py([f"resume={run_dir}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert train_steps(run_dir) == [1, 2, 3, 4]  # step 3 redone once
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["resumed"] is True
    straight_dir, straight_summary = straight_run
    for key in ("rm_score_start", "rm_score_final", "kl_final"):
        assert summary[key] == pytest.approx(straight_summary[key], rel=1e-4, abs=1e-6), key
    expected = load_file(straight_dir / "adapter" / "adapter_model.safetensors")
    got = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert expected.keys() == got.keys() and all(torch.allclose(got[n], expected[n], atol=1e-5) for n in expected)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_finishes(outputs, tmp_path):
    run_dir = tmp_path / "stopped"
    args = [*rloo_overrides(**RUN), f"outputs_root={outputs}", f"hydra.run.dir={run_dir}"]
    stopped = train_py(args, wrapper=["tests/signal_at_step.py", "SIGTERM", "1"])
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("stopped:")]
    assert len(lines) == 1 and f"resume with: python train.py resume={run_dir}" in lines[0], stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    assert (run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()

    resumed = train_py([f"resume={run_dir}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert train_steps(run_dir) == [1, 2, 3, 4]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"


def test_missing_reward_model_says_to_train_one(tmp_path):
    cfg = compose_train(rloo_overrides(), outputs_root=tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"no reward model at .*latest/rm: run `python train\.py algo=rm` first"):
        run_experiment(cfg, tmp_path / "run")


@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"algo.batch_size": "6", "algo.num_generations": "4"},
            r"algo\.batch_size=6 is not divisible by algo\.num_generations=4: a rollout holds whole groups of 4 "
            r"completions of one prompt; choose a batch size that is a multiple of 4 \(e\.g\. 8\)",
        ),
        (
            {"algo.num_iterations": "2", "algo.save_every": "3", "algo.max_steps": "4"},
            r"algo\.save_every=3 is not a multiple of the 2 optimizer steps of one rollout",
        ),
        ({"algo.epsilon": "0"}, r"algo\.epsilon=0\.0 is out of range: must be > 0"),
        ({"algo.normalize_advantages": "maybe"}, r"algo\.normalize_advantages='maybe' has the wrong type"),
    ],
)
def test_bad_settings_name_the_value_and_the_fix(override, message):
    cfg = compose_train(rloo_overrides(**override))
    with pytest.raises(ConfigError, match=message):
        from_node(rloo.Settings, cfg.algo, "algo")
