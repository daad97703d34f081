"""GRPO's and RLOO's phases (TRL's GRPOTrainer / RLOOTrainer as rlhf/algos/online_trl.py runs them) against
values worked out by hand, and which forwards the config makes TRL run."""

import pytest

from rlhf.plan import memory as m
from rlhf.plan import plan
from rlhf.plan.phases import OnlineWorkload, online_phases
from tests.conftest import compose_train
from tests.plan.test_memory import ARCH, CPU, LORA, hardware


def workload(**changes) -> OnlineWorkload:
    """8 completions (2 prompts x 4) of 6 + 4 tokens, micro batch 2, a fresh adapter, GRPO's preset forwards."""
    values = dict(algo="grpo", batch_size=8, num_generations=4, num_mini_batches=1, eval_prompts=3, prompt_len=6,
                  new_tokens=4, micro_batch=2, init_adapter=False, reference_forward=True,
                  old_policy_forward=False)  # fmt: skip
    return OnlineWorkload(**{**values, **changes})


def phases(p=CPU, **changes) -> dict:
    return {phase.name: phase for phase in online_phases(ARCH, p, LORA, workload(**changes))}


def test_resident_is_one_policy_base_and_a_separate_reward_model():
    resident = phases()["rollout"].resident
    # the causal LM (138,048 parameters) serves policy and reference; the reward model is its own classifier
    # (138,112: a score head instead of the tied LM head); adapters policy + reward in fp32 and the reward's
    # fp32 score head; the policy adapter's gradient (4) and AdamW moments (8)
    assert resident == {
        "weights: policy base": 138_048 * 4,
        "weights: reward model": 138_112 * 4,
        "adapters (policy, reward)": 2 * 3_584 * 4 + 64 * 4,
        "gradients": 3_584 * 4,
        "optimizer state (adamw_torch)": 3_584 * 8,
    }
    # a saved adapter gets TRL's frozen 'ref' copy, but only when the loss uses the reference
    assert "adapters (policy, 'ref' copy, reward)" in phases(init_adapter=True)["rollout"].resident
    assert "adapters (policy, reward)" in phases(init_adapter=True, reference_forward=False)["rollout"].resident


@pytest.mark.parametrize(("precision", "kv_bytes"), [(CPU, 4), (m.Precision.of(hardware(dtype="bfloat16")), 2)])
def test_the_rollout_holds_the_kv_cache_of_every_completion_at_once(precision, kv_bytes):
    rollout = phases(precision)["rollout"]
    # layers x (K, V) x kv_heads x head_dim x bytes x completions x (prompt + new) tokens: one generate() call
    kv = rollout.moments["end of generation"]["KV cache (8 x 10 tokens)"]
    assert kv == 2 * 2 * 2 * 16 * kv_bytes * 8 * 10
    # TRL keeps no sampling logits: beside the full cache only one decoding step's buffers
    assert rollout.moments["last decoding step"] == {
        "KV cache (8 x 10 tokens)": kv,
        "logits (one decoding step)": m.SAMPLING_STEP_COPIES * 8 * 1000 * 4,
    }
    assert "log-probs of the samples" not in rollout.moments


def test_scoring_runs_the_forwards_the_config_asks_for_one_at_a_time():
    scoring = phases(old_policy_forward=True)["scoring"]
    assert set(scoring.moments) == {"old-policy log-probs", "reference log-probs", "reward model forward"}
    # a micro batch of 2 x 10 tokens; on CPU the fused head scores every position but the last (8 fp32 tiles)
    assert scoring.moments["reference log-probs"] == {
        "activations": m.forward_transient_bytes(ARCH, CPU, 2, 10),
        "log-prob tiles": 8 * (2 * 9) * 1000 * 4,  # no hidden-state gradient without a backward
    }
    assert set(phases(reference_forward=False)["scoring"].moments) == {"reward model forward"}


def test_the_update_scores_the_micro_batch_with_the_fused_head():
    backward = phases()["update"].moments["backward"]
    assert backward["activations"] == m.train_activation_bytes(ARCH, CPU, LORA, 2, 10, dropout=False)
    assert backward["log-prob tiles"] == 8 * (2 * 9) * 1000 * 4 + 2 * 9 * 64 * 4  # + the fp32 hidden-state gradient
    # on CUDA (Triton) only the completion tokens are projected, one tile buffer
    gpu = m.Precision.of(hardware(name="gpu", dtype="bfloat16", bf16=True))
    tiles = phases(gpu)["update"].moments["backward"]["log-prob tiles"]
    assert tiles == 1 * (2 * 4) * 1000 * 2 + 2 * 4 * 64 * 4


def test_evaluation_generates_a_batch_of_prompts_and_scores_micro_batches():
    evaluation = phases(eval_prompts=3)["evaluation"]
    # held_out.evaluate: min(eval_prompts, batch_size) = 3 prompts per generate call
    assert evaluation.moments["end of generation"]["KV cache (3 x 10 tokens)"] == 2 * 2 * 2 * 16 * 4 * 3 * 10
    # the log-prob forwards materialise fp32 logits of micro batch 2 x 4 response tokens (3 copies)
    assert evaluation.moments["log-probs"]["logits"] == 3 * 2 * 4 * 1000 * 4


def online_plan(experiment: str, *overrides: str):
    return plan(compose_train([f"experiment={experiment}", "hardware=gpu_24gb", *overrides]))


def test_beta_zero_drops_the_reference_forward():
    with_reference = online_plan("llama2_7b_hh_grpo")
    without = online_plan("llama2_7b_hh_grpo", "algo.beta=0")
    assert "reference log-probs" in with_reference.phases[1].moments
    assert "reference log-probs" not in without.phases[1].moments
    # and TRL adds no 'ref' copy of the SFT adapter: the reference is never computed
    assert any("'ref' copy" in name for name in with_reference.phases[0].resident)
    assert not any("'ref' copy" in name for name in without.phases[0].resident)


def test_the_old_policy_forward_runs_when_the_policy_moves_within_a_rollout():
    # GRPO: only when a rollout serves more than one optimizer step (TRL's generate_every test); RLOO: always
    assert not online_plan("llama2_7b_hh_grpo").workload.old_policy_forward
    assert online_plan("llama2_7b_hh_grpo", "algo.num_iterations=2").workload.old_policy_forward
    assert online_plan("llama2_7b_hh_grpo", "algo.num_mini_batches=2").workload.old_policy_forward
    assert online_plan("llama2_7b_hh_rloo").workload.old_policy_forward
