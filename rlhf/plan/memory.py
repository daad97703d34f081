"""The memory model: bytes of each thing a phase holds on the device, from the architecture and the shapes.

Every function returns bytes and is a formula of its arguments, checked by hand in tests/plan/ and against
measured peaks in bench/plan_check.py. Symbols: V vocabulary, H hidden size, I MLP width, n_h heads, d head
size, n_kv key/value heads, N_l layers, r LoRA rank; A bytes of an activation, W of a stored weight.

    weights        params x W; under 4-bit the layers' linear weights take NF4_BYTES each and the rest
                   (embeddings, norms, LM head) is upcast to fp32 by peft's prepare_model_for_kbit_training
    adapters       LoRA params (N_l x r x (in + out) per targeted module) x 4: peft keeps adapters in fp32
    gradients      trainable params x their own bytes (4 for LoRA)
    optimizer      AdamW: two moments of the parameter's dtype (8 bytes for fp32 LoRA weights);
                   8-bit AdamW (hardware.optim *8bit*): 2 bytes a parameter
    KV cache       2 x N_l x n_kv x d x tokens x A (4 under 4-bit: see Precision.of)
    activations    training: what autograd saves (layer_saved_bytes) for every layer, or with gradient
                   checkpointing each layer's input plus one layer recomputed; no-grad forwards: the
                   working set of one layer (forward_transient_bytes)
    logits         rows x positions x V x 4 (fp32) per copy; the number of copies alive at the peak is a
                   property of the code that computes them (LOGIT_COPIES)
    weight copies  bf16 autocast of fp32 weights (hardware=cpu_bf16) casts each frozen weight per use, and a
                   training forward saves the casts (autocast_weight_copies_bytes)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.config import AUTO, HardwareSettings, LoraSettings
from rlhf.plan.architecture import Architecture

GIB = 1024**3

# bitsandbytes NF4 with double quantization (rlhf/modeling/models.py): 4-bit codes, an 8-bit absmax per block
# of 64 weights, an fp32 scale per 256 blocks.
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
ADAPTER_BYTES = 4  # peft casts adapter weights to fp32 on a bf16/fp16 base (autocast_adapter_dtype)
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

# The logits alive at once, counted in the code that makes them and checked by bench/plan_check.py, as (copies
# of the [rows, positions, V] logits in fp32, and single [positions, V] fp32 rows): fp32 logits are scaled and
# log-softmaxed whole; bf16 ones (autocast) are kept bf16 (half a copy) and upcast one row at a time
# (rlhf/modeling/token_math.py, gather_logprobs and entropy_from_logits).
LOGIT_COPIES = {
    # PPO update: fp32: the logits, logits / temperature and the log-softmax in the forward; the saved log-softmax,
    # the gather's gradient and the log-softmax's input gradient in the backward. bf16: the saved fp32
    # log-softmax rows (one copy), the bf16 logits and their gradient, a row's temporaries.
    "update": {"fp32": (3, 0), "bf16": (1.5, 2)},
    # PPO scoring of the policy when the rollout kept no log-probs (bf16): log-probs and entropies, whose
    # per-row upcast, scaling, log-softmax, exp and product are six rows at once.
    "score_entropy": {"fp32": (3, 0), "bf16": (0.5, 6)},
    # PPO scoring of the reference, held-out log-probs (rlhf/modeling/held_out.py): log-probs only.
    "score": {"fp32": (3, 0), "bf16": (0.5, 2)},
    # Held-out log-probs of rm/sft/dpo (rlhf/modeling/logprobs.py): logits, the masked rows, their log-softmax
    # (fp32 whatever the model's dtype).
    "eval": {"fp32": (3, 0), "bf16": (3, 0)},
    # The LM head's output alone (no-grad), beside the bf16 copy of its weight that autocast makes.
    "head": {"fp32": (1, 0), "bf16": (0.5, 0)},
}
# A PPO rollout that keeps the sampling logits (full precision, rlhf/modeling/generation.py), always fp32: at the
# end of generation transformers' per-step logits and their stack, while generate's output still holds the KV
# cache; after it, the stack, logits / temperature and the log-softmax of gather_logprobs.
ROLLOUT_LOGIT_COPIES = {"end of generation": 2, "log-probs of the samples": 3}
# One decoding step's [chunk, V] fp32 buffers: the model's last logits, transformers' fp32 copy, the
# temperature-scaled scores, their softmax and multinomial's work (measured: 5).
SAMPLING_STEP_COPIES = 5

# TRL 1.16's SFT, DPO, GRPO and RLOO never materialise the logits: trl.kernels.ChunkedLogProbFunction projects
# tiles of TOKENS x VOCAB_TILE positions x vocabulary. With Triton (CUDA) a tile is one buffer the kernels work in;
# the torch fallback on CPU (_backward_tile) holds the tile, its scaled copy, log-p, p, the gradient and two
# temporaries at once: 8 tile-sized buffers (and bench/plan_check.py measures about that).
FUSED_TOKENS, FUSED_VOCAB_TILE = 4096, 32768
FUSED_TILE_COPIES = {"cuda": 1, "cpu": 8}


def _runs_on_cpu(hardware: HardwareSettings) -> bool:
    """The CPU profiles (cpu, cpu_bf16; hardware=auto on a machine without CUDA) and any profile with
    hardware.device=cpu run on the CPU whatever their dtype; the other profiles are planned for CUDA when their
    weights are half precision or 4-bit."""
    if hardware.device == "cpu":
        return True
    if hardware.name == AUTO:
        return not torch.cuda.is_available()
    return hardware.name.startswith("cpu")


@dataclass(frozen=True)
class Precision:
    """Bytes per value, from a hardware profile.

    GPU profiles store bf16 weights; fp32 weights mean a CPU profile (hardware=cpu, cpu_bf16), where
    generation runs without autocast (rlhf/algos/ppo/roles.py, Roles.precision).
    """

    weight: int  # a stored weight
    act: int  # an activation in forwards under the profile's autocast
    gen: int  # an activation (and KV entry) during generation
    residual: int  # the residual stream between layers (fp32 under 4-bit: the embeddings were upcast)
    load_in_4bit: bool
    checkpointing: bool
    autocast: bool  # hardware.bf16
    cuda: bool
    optim: str

    @classmethod
    def of(cls, hardware: HardwareSettings) -> Precision:
        weight = _DTYPE_BYTES[hardware.dtype]
        cuda = not _runs_on_cpu(hardware) and (hardware.load_in_4bit or hardware.dtype != "float32")
        act = 2 if (hardware.bf16 or weight == 2 or hardware.load_in_4bit) else 4
        return cls(
            weight=weight,
            act=act,
            # a 4-bit model's K and V are fp32 on any device, autocast or not: prepare_model_for_kbit_training
            # upcasts the norms and embeddings, so the residual stream and the norms' outputs are fp32, and
            # bitsandbytes' Linear4bit returns its input's dtype (measured: bench/plan_check.py "kv dtype")
            gen=4 if hardware.load_in_4bit else (act if cuda else weight),
            residual=4 if hardware.load_in_4bit else weight,
            load_in_4bit=hardware.load_in_4bit,
            checkpointing=hardware.gradient_checkpointing,
            autocast=hardware.bf16,
            cuda=cuda,
            optim=hardware.optim,
        )

    @property
    def logits_kind(self) -> str:
        return "bf16" if self.act == 2 else "fp32"


# --------------------------------------------------------------------------- what stays


def weights_bytes(arch: Architecture, p: Precision, causal: bool = True) -> float:
    """One copy of the model: a causal LM, or (``causal=False``) a sequence classifier on the same base."""
    if p.load_in_4bit:
        return arch.linear_params * NF4_BYTES + arch.other_params(causal) * 4
    return arch.params(causal) * p.weight


def adapter_bytes(arch: Architecture, lora: LoraSettings, count: int = 1) -> float:
    return count * arch.lora_params(lora) * ADAPTER_BYTES


def gradient_bytes(trainable: float, param_bytes: int) -> float:
    return trainable * param_bytes


def optimizer_bytes(trainable: float, param_bytes: int, optim: str) -> float:
    """AdamW's two moments: in the parameter's dtype (torch), or 8-bit (bitsandbytes' *8bit optimizers)."""
    return trainable * (2 if "8bit" in optim else 2 * param_bytes)


# --------------------------------------------------------------------------- what comes and goes


def kv_cache_bytes(arch: Architecture, p: Precision, rows: int, seq: int) -> float:
    """Keys and values of every layer for ``rows`` sequences of ``seq`` tokens."""
    return 2 * arch.num_layers * arch.kv_dim * rows * seq * p.gen


def layer_saved_bytes(arch: Architecture, p: Precision, lora: LoraSettings, dropout: bool) -> float:
    """Bytes per token one decoder layer saves for the backward (counted with saved_tensors_hooks):

    the two RMSNorm inputs in fp32 (2H x 4); the attention's q, k, v (k and v repeated to n_h heads before
    SDPA) and output (4 n_h d x A) and its log-sum-exp (n_h x 4); the MLP's gate, up and SiLU outputs (3I x A);
    the inputs the trainable weights need (the attention input H for LoRA on q/k/v, the MLP input H for
    gate/up, I for down; the o_proj input is the saved attention output; under autocast of an fp32 residual
    stream, each module's own bf16 cast of its input) and each LoRA's r-wide middle;
    under LoRA dropout in training mode, a dropped-out copy of each targeted module's input.
    """
    h, i, q = arch.hidden_size, arch.intermediate_size, arch.num_heads * arch.head_dim
    shapes = arch.linear_shapes()
    targets = set(shapes) if not lora.enabled else set(lora.target_modules)  # full fine-tuning trains them all
    rank = lora.r if lora.enabled else 0
    if p.autocast and p.residual > p.act:
        # an fp32 residual stream under bf16 autocast (cpu_bf16, 4-bit): each trainable module casts its input
        # to bf16 for itself and saves that copy (measured on cpu_bf16), so shared inputs are no longer shared
        inputs = sum(shapes[name][0] for name in targets)
    else:
        inputs = h if targets & {"q_proj", "k_proj", "v_proj"} else 0  # one attention input for q, k and v
        inputs += h if targets & {"gate_proj", "up_proj"} else 0
        inputs += i if "down_proj" in targets else 0
    values = inputs + 4 * q + 3 * i + rank * len(targets)
    if dropout and lora.enabled:
        values += sum(shapes[name][0] for name in targets)
    return 4 * (2 * h + arch.num_heads) + p.act * values


def train_activation_bytes(
    arch: Architecture, p: Precision, lora: LoraSettings, rows: int, seq: int, dropout: bool
) -> float:
    """Saved activations of one forward of ``rows`` x ``seq`` tokens, before its backward."""
    tokens = rows * seq
    layer = layer_saved_bytes(arch, p, lora, dropout)
    body = arch.num_layers * p.residual * arch.hidden_size + layer if p.checkpointing else arch.num_layers * layer
    # + the final norm's input and output (fp32) and the 4-D attention mask built from the padding mask
    return tokens * (body + 2 * 4 * arch.hidden_size) + rows * seq * seq * 4


def autocast_weight_copies_bytes(arch: Architecture, p: Precision, layers: int, lm_head: bool) -> float:
    """Under bf16 autocast of fp32 weights (hardware=cpu_bf16), each linear op casts its frozen weight to bf16
    (autocast caches only the casts of weights that require grad): ``layers`` layers' copies (a training forward
    saves them all for the backward) and the LM head's (V x H) while the logits are computed. bf16 weights
    need no cast, and 4-bit layers keep their packed weights."""
    if not (p.autocast and p.weight == 4 and not p.load_in_4bit):
        return 0
    per_layer = sum(a * b for a, b in arch.linear_shapes().values())
    return 2 * (layers * per_layer + (arch.embedding_params if lm_head else 0))


def forward_transient_bytes(arch: Architecture, p: Precision, rows: int, seq: int, act: int | None = None) -> float:
    """Peak working set of a no-grad forward (scoring, a prefill), one layer at a time: the residual stream,
    a norm's output, the MLP's gate/up/product (4H + 3I values a token, measured 12.2H on SmolLM2 whose I is
    2.67H), the 4-D attention mask, and under 4-bit one dequantised weight."""
    act = p.act if act is None else act
    dequant = max(a * b for a, b in arch.linear_shapes().values()) * 2 if p.load_in_4bit else 0
    return rows * seq * (act * (4 * arch.hidden_size + 3 * arch.intermediate_size) + 4 * seq) + dequant


def logits_bytes(arch: Architecture, rows: int, positions: int) -> float:
    """One fp32 copy of the logits of ``rows`` x ``positions``."""
    return rows * positions * arch.vocab_size * 4


def logits_alive_bytes(kind: str, arch: Architecture, p: Precision, rows: int, positions: int) -> float:
    """The logits of ``rows`` x ``positions`` alive at once where ``kind`` (LOGIT_COPIES) computes them."""
    copies, single_rows = LOGIT_COPIES[kind][p.logits_kind]
    return (copies * rows + single_rows) * positions * arch.vocab_size * 4


def fused_logprob_bytes(arch: Architecture, p: Precision, tokens: int, backward: bool = True) -> float:
    """TRL's tiled log-probs (SFT, DPO, GRPO, RLOO) over ``tokens`` scored positions: the tiles alive at once, and
    in a backward the fp32 gradient of the hidden states. A no-grad forward (GRPO's and RLOO's old-policy and
    reference log-probs) makes no gradient; its tiles are counted as the backward's, an upper bound on CPU."""
    tile = min(tokens, FUSED_TOKENS) * min(arch.vocab_size, FUSED_VOCAB_TILE) * p.act
    gradient = tokens * arch.hidden_size * 4 if backward else 0
    return FUSED_TILE_COPIES["cuda" if p.cuda else "cpu"] * tile + gradient
