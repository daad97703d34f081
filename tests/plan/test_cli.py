"""``python -m rlhf.plan`` as a user runs it, on the tiny model (no weights are loaded); in-process through
rlhf.plan.cli.main but for one run of the module itself."""

import runpy
import subprocess
import sys

import pytest

from rlhf.plan.cli import main
from tests.conftest import REPO


def test_python_m_rlhf_plan_prints_every_ppo_phase_with_its_parts():
    result = subprocess.run([sys.executable, "-m", "rlhf.plan", "debug=tiny", "algo=ppo", "hardware.memory_gib=2"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "model=tiny_llama" in out and "vocab_size=49152" in out
    for phase in ("rollout", "scoring", "update", "evaluation"):
        assert f"  {phase} " in out
    for part in ("weights: shared base", "adapters (policy, reward, value)", "gradients", "logits"):
        assert part in out
    assert "largest algo.rollout_chunk_size that fits: 4" in out  # the whole batch of debug=tiny
    assert out.rstrip().endswith("verdict: fits")


def test_plan_says_what_does_not_fit_and_exits_1(capsys):
    # 1.1 GiB leaves 102 MiB after the 1 GiB reserve: 12 MiB of weights, and 36 MiB of sampling logits a prompt
    # (3 fp32 copies of 64 tokens x 49,152) fit twice, not four times
    code = main(["debug=tiny", "algo=ppo", "hardware.memory_gib=1.1", "algo.sampling.max_new_tokens=64"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "DOES NOT FIT" in out
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("verdict: does not fit: algo.rollout_chunk_size=4 needs ")
    assert last.endswith("set algo.rollout_chunk_size<=2")


def test_plan_of_a_trainer_algorithm(capsys):
    assert main(["debug=tiny", "algo=dpo"]) == 0
    out = capsys.readouterr().out
    assert "  train step " in out and "  evaluation " in out and "log-prob tiles" in out
    assert "no limit set" in out and "verdict" not in out  # hardware=cpu: nothing to check against


def test_a_bad_override_is_one_error_line(capsys):
    assert main(["debug=tiny", "lora.r=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: lora.r=0 is out of range") and err.count("\n") == 1
    assert main(["debug=tiny", "algo=rm", "algo.name=unplanned"]) == 2
    assert "no memory model for algo=unplanned" in capsys.readouterr().err


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_plan_of_an_online_arm(capsys, algo):
    assert main(["debug=tiny", f"algo={algo}", "hardware.memory_gib=2"]) == 0
    out = capsys.readouterr().out
    for phase in ("rollout", "scoring", "update", "evaluation"):
        assert f"  {phase} " in out
    for part in ("weights: policy base", "weights: reward model", "KV cache (", "log-prob tiles"):
        assert part in out
    assert "largest algo.batch_size that fits (one generate call): " in out
    assert out.rstrip().endswith("verdict: fits")


@pytest.mark.parametrize(
    "override, message",
    [  # each was planned ("verdict: fits"), while train.py refuses it
        ("algo.rollout_chunk_size=0", "error: algo.rollout_chunk_size=0 is out of range"),
        ("algo.rollout_chunk_size=-3", "error: algo.rollout_chunk_size=-3 is out of range"),
        ("algo.batch_size=0", "error: algo.batch_size=0 is out of range"),
        ("seed=-1", "error: seed=-1 is out of range"),
        ("+max_nonfinite_update=1", "error: unknown key max_nonfinite_update: did you mean max_nonfinite_updates?"),
    ],
)
def test_python_m_rlhf_plan_refuses_what_train_py_refuses(capsys, monkeypatch, override, message):
    # as `python -m rlhf.plan` runs (its __main__), in-process: the algorithms' imports are paid once
    monkeypatch.setattr(sys, "argv", ["rlhf.plan", "model=llama2_7b", "hardware=gpu_24gb", "algo=ppo", override])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_module("rlhf.plan", run_name="__main__")
    captured = capsys.readouterr()
    assert stopped.value.code == 2, captured.out
    assert captured.err.splitlines() and captured.err.splitlines()[0].startswith(message), captured.err
    assert "verdict" not in captured.out
