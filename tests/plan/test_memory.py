"""The memory model's formulas against values worked out by hand on a small architecture."""

import pytest

from rlhf.config import HardwareSettings, LoraSettings
from rlhf.plan import memory as m
from rlhf.plan.architecture import Architecture
from rlhf.plan.phases import PpoWorkload, TrainerWorkload, ppo_phases, trainer_phases

# 2 layers, H=64, I=128, 4 heads of 16, 2 key/value heads, V=1000, tied embeddings.
ARCH = Architecture(vocab_size=1000, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                    num_kv_heads=2, head_dim=16, tie_word_embeddings=True)  # fmt: skip
LORA = LoraSettings(name="r8", r=8, alpha=16.0, dropout=0.05, target_modules=["q_proj", "v_proj"])
NO_LORA = LoraSettings(name="none", r=None, alpha=None, dropout=None, target_modules=None)


def hardware(**changes) -> HardwareSettings:
    values = dict(name="test", dtype="float32", bf16=False, load_in_4bit=False, gradient_checkpointing=False,
                  optim="adamw_torch", micro_batch_size=2, num_threads=None, memory_gib=None,
                  device="auto")  # fmt: skip
    return HardwareSettings(**{**values, **changes})


CPU = m.Precision.of(hardware())
GPU_4BIT = m.Precision.of(hardware(dtype="bfloat16", bf16=True, load_in_4bit=True, optim="paged_adamw_8bit"))


def test_parameters_and_weights():
    # a layer: q 64x64 + k 64x32 + v 64x32 + o 64x64 + gate, up, down 64x128 = 36,864; embeddings 64,000;
    # norms (2 a layer + the final one) x 64 = 320; the LM head is tied
    assert ARCH.linear_params == 2 * 36_864
    assert ARCH.params() == 73_728 + 64_000 + 320
    assert ARCH.params(causal=False) == 73_728 + 64_000 + 320 + 64  # a 1-output score head instead
    assert m.weights_bytes(ARCH, CPU) == 138_048 * 4
    # 4-bit: the linear weights packed, everything else upcast to fp32
    assert m.weights_bytes(ARCH, GPU_4BIT) == pytest.approx(73_728 * (0.5 + 1 / 64 + 4 / 16_384) + 64_320 * 4)


def test_lora_adapter_gradients_and_optimizer():
    # r x (in + out) per targeted module and layer: q 8 x (64 + 64), v 8 x (64 + 32)
    assert ARCH.lora_params(LORA) == 2 * (8 * 128 + 8 * 96) == 3_584
    assert m.adapter_bytes(ARCH, LORA, count=3) == 3 * 3_584 * 4
    assert m.optimizer_bytes(3_584, 4, "adamw_torch") == 3_584 * 8  # two fp32 moments
    assert m.optimizer_bytes(3_584, 4, "paged_adamw_8bit") == 3_584 * 2  # two 8-bit moments
    assert ARCH.lora_params(NO_LORA) == 0


def test_kv_cache_and_logits():
    # 2 (K and V) x layers x kv_heads x head_dim x tokens x rows x bytes
    assert m.kv_cache_bytes(ARCH, CPU, rows=3, seq=10) == 2 * 2 * 2 * 16 * 10 * 3 * 4
    assert m.kv_cache_bytes(ARCH, GPU_4BIT, rows=3, seq=10) == 2 * 2 * 2 * 16 * 10 * 3 * 4  # fp32: 4-bit's K, V
    assert m.logits_bytes(ARCH, rows=2, positions=5) == 2 * 5 * 1000 * 4


def test_saved_activations_with_and_without_checkpointing():
    # a layer saves per token: norms 2H x 4 + log-sum-exp 4 heads x 4; and x A: the q/v LoRA input H,
    # q, k, v, attention output 4 x 64, MLP 3 x 128, the two LoRA middles 2 x 8
    per_layer = 4 * (2 * 64 + 4) + 4 * (64 + 4 * 64 + 3 * 128 + 2 * 8)
    assert m.layer_saved_bytes(ARCH, CPU, LORA, dropout=False) == per_layer
    # LoRA dropout in training mode keeps a dropped-out copy of q's and v's inputs
    assert m.layer_saved_bytes(ARCH, CPU, LORA, dropout=True) == per_layer + 4 * 2 * 64
    rows, seq = 2, 10
    top = rows * seq * 2 * 4 * 64 + rows * seq * seq * 4  # final norm in/out, 4-D mask
    assert m.train_activation_bytes(ARCH, CPU, LORA, rows, seq, False) == rows * seq * 2 * per_layer + top
    checkpointed = m.Precision.of(hardware(gradient_checkpointing=True))
    # each layer's input (fp32 residual) and one layer recomputed
    assert m.train_activation_bytes(ARCH, checkpointed, LORA, rows, seq, False) == (
        rows * seq * (2 * 4 * 64 + per_layer) + top
    )


def test_ppo_phases_on_a_shared_base():
    w = PpoWorkload(batch_size=8, chunk=4, eval_prompts=2, prompt_len=6, new_tokens=4, micro_batch=2,
                    share_base=True, value_model="adapter", init_adapter=False)  # fmt: skip
    phases = {p.name: p for p in ppo_phases(ARCH, CPU, LORA, w)}
    resident = 138_048 * 4 + 3 * 3_584 * 4 + 2 * 64 * 4 + (2 * 3_584 + 64) * (4 + 8)
    assert sum(phases["rollout"].resident.values()) == resident
    # fp32 rollout keeps the sampling logits: 3 copies of chunk x new tokens x V after generation
    logits = 4 * 4 * 1000 * 4
    assert phases["rollout"].peak_moment == "log-probs of the samples"
    assert phases["rollout"].peak == resident + 3 * logits
    assert phases["update"].components["logits"] == 3 * 2 * 4 * 1000 * 4  # micro batch 2
    # held-out generation: min(eval_prompts, chunk) = 2 rows of 6 + 4 tokens
    kv = [v for k, v in phases["evaluation"].moments["end of generation"].items() if k.startswith("KV cache (")]
    assert kv == [2 * 2 * 2 * 16 * 10 * 2 * 4]


def test_a_model_per_role_holds_four_bases():
    w = PpoWorkload(batch_size=8, chunk=4, eval_prompts=2, prompt_len=6, new_tokens=4, micro_batch=2,
                    share_base=False, value_model="adapter", init_adapter=False)  # fmt: skip
    weights = {k: v for k, v in ppo_phases(ARCH, CPU, LORA, w)[0].resident.items() if k.startswith("weights")}
    assert weights == {
        "weights: policy": 138_048 * 4,
        "weights: reference": 138_048 * 4,
        "weights: reward": 138_112 * 4,
        "weights: value": 138_112 * 4,
    }


def test_trainer_phases():
    w = TrainerWorkload(algo="dpo", micro_batch=2, max_length=10, eval_batch_size=3, dropout=False)
    step, evaluation = trainer_phases(ARCH, CPU, LORA, w)
    # chosen + rejected: 4 rows; the reference forward runs while the policy's activations are saved
    assert step.peak_moment == "reference forward"
    tiles = 8 * 40 * 1000 * 4 + 40 * 64 * 4  # 8 fp32 tiles of 40 tokens x V on CPU, the hidden-state gradient
    assert step.components["log-prob tiles"] == tiles
    assert evaluation.components["logits"] == 3 * 3 * 10 * 1000 * 4
    rm_step, _ = trainer_phases(ARCH, CPU, LORA, TrainerWorkload("rm", 2, 10, 3, dropout=False))
    assert "log-prob tiles" not in rm_step.components  # a score head, no vocabulary


def test_bf16_autocast_keeps_no_sampling_logits_and_upcasts_rows():
    cpu_bf16 = m.Precision.of(hardware(bf16=True))  # fp32 weights, bf16 autocast (hardware=cpu_bf16)
    assert (cpu_bf16.act, cpu_bf16.gen) == (2, 4)  # generation runs without autocast on CPU
    # bf16 logits are half an fp32 copy, upcast one [positions, V] row at a time
    assert m.logits_alive_bytes("score", ARCH, cpu_bf16, rows=4, positions=5) == (0.5 * 4 + 2) * 5 * 1000 * 4
    assert m.logits_alive_bytes("score", ARCH, CPU, rows=4, positions=5) == 3 * 4 * 5 * 1000 * 4
    w = PpoWorkload(batch_size=8, chunk=4, eval_prompts=2, prompt_len=6, new_tokens=4, micro_batch=2,
                    share_base=True, value_model="adapter", init_adapter=False)  # fmt: skip
    rollout = ppo_phases(ARCH, cpu_bf16, LORA, w)[0]
    assert set(rollout.moments) == {"prefill", "end of generation", "last decoding step"}
    # one decoding step: 5 fp32 [chunk, V] buffers beside the full KV cache (fp32: no autocast on CPU)
    assert rollout.moments["last decoding step"] == {
        "KV cache (4 x 10 tokens)": 2 * 2 * 2 * 16 * 10 * 4 * 4,
        "logits (one decoding step)": 5 * 4 * 1000 * 4,
    }


def test_cpu_profiles_with_bf16_weights_are_planned_for_the_cpu():
    """hardware=cpu_bf16 stores bf16 weights but runs on the CPU: the fused log-prob head keeps the CPU's tile
    copies, where a bf16 GPU profile keeps one."""
    cpu_bf16 = m.Precision.of(hardware(name="cpu_bf16", dtype="bfloat16", bf16=True))
    a100 = m.Precision.of(hardware(name="a100_80gb", dtype="bfloat16", bf16=True))
    assert (cpu_bf16.cuda, a100.cuda) == (False, True)
    assert cpu_bf16.gen == a100.gen == 2  # bf16 weights decode in bf16 on both
    tile = m.fused_logprob_bytes(ARCH, cpu_bf16, tokens=64) - m.fused_logprob_bytes(ARCH, a100, tokens=64)
    per_copy = m.fused_logprob_bytes(ARCH, a100, tokens=64) - 64 * ARCH.hidden_size * 4
    assert tile == (m.FUSED_TILE_COPIES["cpu"] - m.FUSED_TILE_COPIES["cuda"]) * per_copy > 0
