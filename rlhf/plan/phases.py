"""What each algorithm holds on the device, phase by phase, as rlhf/plan/memory.py's components.

A phase is what stays for the whole run (weights, adapters, gradients, optimizer state) plus, at each of its
candidate peak moments, what comes and goes (KV cache, activations, logits); its peak is the largest moment.

    PPO (rlhf/algos/ppo/)  rollout     generate a chunk of prompts (algo.rollout_chunk_size): the prefill, then the
                                       end of generation (the full KV cache, and the kept sampling logits at full
                                       precision)
                           scoring     no-grad forwards of the reference, value and reward roles, a chunk of
                                       sequences each
                           update      forward + backward of a micro batch (hardware.micro_batch_size: activations,
                                       the logits spike)
                           evaluation  held-out rollout (no logits kept), then log-probs of policy and reference
                                       and reward scores, in chunks (rlhf/modeling/held_out.py)
    grpo, rloo (TRL)       rollout     generate the whole rollout in one generate() call (algo.batch_size
                                       completions: prompts x algo.num_generations; no logits kept)
                           scoring     no-grad log-prob forwards of a micro batch each (the old policy's: rloo
                                       always, grpo when a rollout serves more than one optimizer step; the
                                       reference's when algo.beta > 0), then the reward model's, one at a time
                           update      forward + backward of a micro batch (activations, the fused log-prob tiles
                                       over the completion tokens)
                           evaluation  PPO's held-out evaluation, algo.batch_size prompts per generate call and
                                       hardware.micro_batch_size sequences per forward
    rm, sft, dpo (TRL)     train step  forward + backward of a micro batch (rm and dpo: chosen + rejected rows)
                           evaluation  no-grad held-out scoring in algo.eval_batch_size rows
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.config import LoraSettings
from rlhf.plan import memory as m
from rlhf.plan.architecture import Architecture


@dataclass(frozen=True)
class Phase:
    name: str
    resident: dict[str, float]  # bytes that stay for the whole run, by component
    moments: dict[str, dict[str, float]]  # candidate peak moments -> bytes that come and go, by component

    @property
    def peak_moment(self) -> str:
        return max(self.moments, key=lambda name: sum(self.moments[name].values()))

    @property
    def components(self) -> dict[str, float]:
        """Everything held at the peak, by component."""
        return {**self.resident, **self.moments[self.peak_moment]}

    @property
    def peak(self) -> float:
        return sum(self.components.values())

    @property
    def largest_transient(self) -> tuple[str, float]:
        """The biggest component that comes and goes at the peak (what a smaller chunk or micro batch shrinks)."""
        return max(self.moments[self.peak_moment].items(), key=lambda item: item[1])


@dataclass(frozen=True)
class PpoWorkload:
    """The shapes of a PPO iteration (conf/algo/ppo.yaml) on this hardware profile."""

    batch_size: int  # prompts per iteration
    chunk: int  # prompts generated at once: algo.rollout_chunk_size
    eval_prompts: int
    prompt_len: int  # algo.sampling.max_prompt_length: prompts are left-padded to the longest
    new_tokens: int  # algo.sampling.max_new_tokens
    micro_batch: int  # rows per forward + backward in the update
    share_base: bool
    value_model: str  # adapter | policy
    init_adapter: bool  # a frozen reference copy of the start adapter


@dataclass(frozen=True)
class OnlineWorkload:
    """The shapes of a GRPO or RLOO rollout (conf/algo/{grpo,rloo}.yaml) in TRL 1.16's GRPOTrainer / RLOOTrainer
    as rlhf/algos/online_trl.py configures them, on this hardware profile."""

    algo: str  # grpo | rloo
    batch_size: int  # completions per rollout (TRL's generation_batch_size), generated in one call
    num_generations: int  # completions per prompt
    num_mini_batches: int  # optimizer steps per pass over a rollout
    eval_prompts: int
    prompt_len: int  # algo.sampling.max_prompt_length: prompts are left-padded to the longest
    new_tokens: int  # algo.sampling.max_new_tokens
    micro_batch: int  # hardware.micro_batch_size
    init_adapter: bool  # the policy continues a saved adapter
    reference_forward: bool  # algo.beta > 0: TRL computes the reference's log-probs
    old_policy_forward: bool  # TRL computes the sampling policy's log-probs before the update

    @property
    def rows(self) -> int:
        """Sequences per forward in TRL's scoring and update: its per_device_train_batch_size, the micro batch of
        a minibatch (online_trl.training_args)."""
        return min(self.micro_batch, self.batch_size // self.num_mini_batches)

    @property
    def ref_copy(self) -> bool:
        """TRL adds a frozen 'ref' copy of a saved adapter only when the loss uses the reference (beta > 0)."""
        return self.init_adapter and self.reference_forward


@dataclass(frozen=True)
class TrainerWorkload:
    """The shapes of a TRL trainer step (conf/algo/{rm,sft,dpo}.yaml) on this hardware profile."""

    algo: str  # rm | sft | dpo
    micro_batch: int  # pairs (rm, dpo) or examples (sft) per forward
    max_length: int
    eval_batch_size: int
    dropout: bool  # LoRA dropout is on in training mode (sft; TRL's rm and dpo trainers turn dropout off)
    init_adapter: bool = False  # dpo: TRL adds a frozen 'ref' copy of the start adapter
    precompute_ref: bool = False  # dpo with lora=none: no second full model


def _trainable(arch: Architecture, lora: LoraSettings, causal: bool) -> tuple[float, int]:
    """(trainable parameters, their bytes): LoRA weights (fp32) or, with lora=none, the whole model."""
    if lora.enabled:
        return arch.lora_params(lora), m.ADAPTER_BYTES
    return arch.params(causal), 0  # 0: the weight dtype, filled in by the caller


def _state(trainable: float, param_bytes: int, optim: str) -> dict[str, float]:
    return {
        "gradients": m.gradient_bytes(trainable, param_bytes),
        f"optimizer state ({optim})": m.optimizer_bytes(trainable, param_bytes, optim),
    }


def _trl_backward(
    arch: Architecture, p: m.Precision, lora: LoraSettings, rows: int, seq: int, dropout: bool, scored: int | None
) -> dict[str, float]:
    """A TRL trainer's forward + backward of ``rows`` x ``seq`` tokens: the saved activations, the fused log-prob
    tiles over ``scored`` positions (None: a score head, no vocabulary) and the layers' saved autocast weight
    copies (TRL's tiled log-probs save the LM head's own weight, so only the layers' casts stay)."""
    saved_layers = 1 if p.checkpointing else arch.num_layers  # whose autocast weight copies the backward keeps
    moment = {"activations": m.train_activation_bytes(arch, p, lora, rows, seq, dropout)}
    if scored is not None:
        moment["log-prob tiles"] = m.fused_logprob_bytes(arch, p, scored)
    moment["bf16 weight copies (autocast)"] = m.autocast_weight_copies_bytes(arch, p, saved_layers, lm_head=False)
    return moment


# --------------------------------------------------------------------------- PPO


def ppo_resident(arch: Architecture, p: m.Precision, lora: LoraSettings, w: PpoWorkload) -> dict[str, float]:
    """Weights of each role, adapters and heads, and the trainable state (hardware.optim's optimizer)."""
    value_adapter = w.value_model == "adapter"
    if w.share_base:
        weights = {"weights: shared base": m.weights_bytes(arch, p)}
    else:
        weights = {
            "weights: policy": m.weights_bytes(arch, p),
            "weights: reference": m.weights_bytes(arch, p),
            "weights: reward": m.weights_bytes(arch, p, causal=False),
        }
        if value_adapter:
            weights["weights: value"] = m.weights_bytes(arch, p, causal=False)
    names = ["policy", "reward"] + (["value"] if value_adapter else []) + (["reference"] if w.init_adapter else [])
    heads = 2 * arch.hidden_size * 4  # the value and reward heads
    trainable = arch.lora_params(lora) * (2 if value_adapter else 1) + arch.hidden_size
    return {
        **weights,
        f"adapters ({', '.join(names)})": m.adapter_bytes(arch, lora, len(names)) + heads,
        **_state(trainable, m.ADAPTER_BYTES, p.optim),
    }


# The moments of a generate call (_generation_moments): what algo.batch_size (grpo, rloo) shrinks
GENERATION_MOMENTS = ("prefill", "end of generation", "last decoding step", "log-probs of the samples")


def _generation_moments(
    arch: Architecture, p: m.Precision, chunk: int, prompt: int, new: int, keep_logits: bool
) -> dict[str, dict[str, float]]:
    full = m.kv_cache_bytes(arch, p, chunk, prompt + new)
    kv = f"KV cache ({chunk} x {prompt + new} tokens)"
    step = {"logits (one decoding step)": m.SAMPLING_STEP_COPIES * chunk * arch.vocab_size * 4}
    moments = {
        "prefill": {
            f"KV cache ({chunk} x {prompt} tokens)": m.kv_cache_bytes(arch, p, chunk, prompt),
            "activations": m.forward_transient_bytes(arch, p, chunk, prompt, act=p.gen),
        },
        # DynamicCache grows by torch.cat: a copy of one layer's keys (or values) at each step
        "end of generation": {kv: full, "KV cache growth (one layer's copy)": full / (2 * arch.num_layers)},
        "last decoding step": {kv: full, **step},
    }
    if keep_logits:
        logits = m.logits_bytes(arch, chunk, new)
        for moment, copies in m.ROLLOUT_LOGIT_COPIES.items():
            moments.setdefault(moment, {})["logits (sampling, fp32)"] = copies * logits
        moments["last decoding step"]["logits (sampling, fp32)"] = logits  # the steps so far, kept
    return moments


def _scoring_moments(
    arch: Architecture, p: m.Precision, rows: int, seq: int, new: int, entropy: bool
) -> dict[str, dict[str, float]]:
    """No-grad forwards of ``rows`` sequences; ``entropy``: the policy's log-probs and entropies too."""
    kind = "score_entropy" if entropy else "score"
    return {
        "forward": {"activations": m.forward_transient_bytes(arch, p, rows, seq)},
        "LM head": {
            "logits": m.logits_alive_bytes("head", arch, p, rows, new),
            "bf16 weight copies (autocast)": m.autocast_weight_copies_bytes(arch, p, layers=0, lm_head=True),
        },
        "log-probs": {"logits": m.logits_alive_bytes(kind, arch, p, rows, new)},
    }


def _held_out_moments(
    arch: Architecture, p: m.Precision, gen_rows: int, score_rows: int, prompt: int, new: int
) -> dict[str, dict[str, float]]:
    """rlhf/modeling/held_out.py evaluate: ``gen_rows`` prompts per generate call (no logits kept), then policy
    and reference log-probs and reward scores, ``score_rows`` sequences at a time."""
    return {
        **_generation_moments(arch, p, gen_rows, prompt, new, keep_logits=False),
        **_scoring_moments(arch, p, score_rows, prompt + new, new, entropy=False),
    }


def ppo_phases(arch: Architecture, p: m.Precision, lora: LoraSettings, w: PpoWorkload) -> list[Phase]:
    resident = ppo_resident(arch, p, lora, w)
    seq = w.prompt_len + w.new_tokens
    # Sampling log-probs are kept only at full precision (Roles.generation_matches_scoring)
    rollout = _generation_moments(arch, p, w.chunk, w.prompt_len, w.new_tokens, keep_logits=not p.autocast)
    saved_layers = 1 if p.checkpointing else arch.num_layers  # whose autocast weight copies the backward keeps
    update = {
        "backward": {
            "activations": m.train_activation_bytes(arch, p, lora, w.micro_batch, seq, dropout=False),
            "logits": m.logits_alive_bytes("update", arch, p, w.micro_batch, w.new_tokens),
            "bf16 weight copies (autocast)": m.autocast_weight_copies_bytes(arch, p, saved_layers, lm_head=True),
        }
    }
    eval_chunk = min(w.eval_prompts, w.chunk)
    evaluation = _held_out_moments(arch, p, eval_chunk, eval_chunk, w.prompt_len, w.new_tokens)
    return [
        Phase("rollout", resident, rollout),
        # the policy's log-probs (and entropies) come from the rollout when it kept its logits
        Phase("scoring", resident, _scoring_moments(arch, p, w.chunk, seq, w.new_tokens, entropy=p.autocast)),
        Phase("update", resident, update),
        Phase("evaluation", resident, evaluation),
    ]


# --------------------------------------------------------------------------- rm, sft, dpo


def trainer_resident(arch: Architecture, p: m.Precision, lora: LoraSettings, w: TrainerWorkload) -> dict[str, float]:
    causal = w.algo != "rm"
    resident = {"weights": m.weights_bytes(arch, p, causal)}
    if w.algo == "dpo" and not lora.enabled and not w.precompute_ref:
        resident["weights: reference copy"] = m.weights_bytes(arch, p)
    if lora.enabled:
        copies = 2 if (w.algo == "dpo" and w.init_adapter) else 1
        resident["adapters" + (" (policy, 'ref' copy)" if copies == 2 else "")] = m.adapter_bytes(arch, lora, copies)
    trainable, param_bytes = _trainable(arch, lora, causal)
    if w.algo == "rm" and lora.enabled:
        trainable += arch.hidden_size  # the score head (modules_to_save)
    return {**resident, **_state(trainable, param_bytes or p.weight, p.optim)}


def trainer_phases(arch: Architecture, p: m.Precision, lora: LoraSettings, w: TrainerWorkload) -> list[Phase]:
    resident = trainer_resident(arch, p, lora, w)
    rows = w.micro_batch * (1 if w.algo == "sft" else 2)  # rm and dpo run chosen and rejected in one batch
    seq = w.max_length
    backward = _trl_backward(arch, p, lora, rows, seq, w.dropout, scored=None if w.algo == "rm" else rows * seq)
    step = {"backward": backward}
    if w.algo == "dpo" and not w.precompute_ref:  # the reference forward runs after the policy's
        reference = backward["activations"] + m.forward_transient_bytes(arch, p, rows, seq)
        step["reference forward"] = {**backward, "activations": reference}
    evaluation = {"forward": {"activations": m.forward_transient_bytes(arch, p, w.eval_batch_size, seq)}}
    if w.algo != "rm":
        evaluation["log-probs"] = {"logits": m.logits_alive_bytes("eval", arch, p, w.eval_batch_size, seq)}
    return [Phase("train step", resident, step), Phase("evaluation", resident, evaluation)]


# --------------------------------------------------------------------------- grpo, rloo


def online_resident(arch: Architecture, p: m.Precision, lora: LoraSettings, w: OnlineWorkload) -> dict[str, float]:
    """One base serves the policy and its reference (the adapter disabled, or TRL's frozen 'ref' copy of a saved
    adapter); the reward model is a second model (online_trl.RewardModel: load_reward_run), a sequence
    classifier with its own adapter and fp32 score head. The rm run's base and LoRA rank are not known before it
    loads: planned as the policy's model and lora group, as the presets use."""
    names = ["policy"] + (["'ref' copy"] if w.ref_copy else []) + ["reward"]
    score_head = arch.hidden_size * 4  # the reward model's fp32 head (modules_to_save)
    return {
        "weights: policy base": m.weights_bytes(arch, p),
        "weights: reward model": m.weights_bytes(arch, p, causal=False),
        f"adapters ({', '.join(names)})": m.adapter_bytes(arch, lora, len(names)) + score_head,
        **_state(arch.lora_params(lora), m.ADAPTER_BYTES, p.optim),
    }


def _scored_tokens(p: m.Precision, rows: int, prompt: int, new: int) -> int:
    """Positions TRL's fused LM head projects (trl.trainer.utils.add_fused_lm_head): with Triton (CUDA) only the
    labelled ones, the completion tokens; the torch fallback scores every position but the last."""
    return rows * new if p.cuda else rows * (prompt + new - 1)


def _online_scoring_moments(arch: Architecture, p: m.Precision, w: OnlineWorkload) -> dict[str, dict[str, float]]:
    """After generate() returns (its KV cache freed), one no-grad forward at a time over the rollout in micro
    batches: TRL's old-policy and reference log-probs where it computes them, then our reward model's scores
    (hardware.micro_batch_size conversations a batch: online_trl.RewardModel)."""
    seq = w.prompt_len + w.new_tokens
    scored = _scored_tokens(p, w.rows, w.prompt_len, w.new_tokens)
    log_probs = {
        "activations": m.forward_transient_bytes(arch, p, w.rows, seq),
        "log-prob tiles": m.fused_logprob_bytes(arch, p, scored, backward=False),
    }
    moments = {}
    if w.old_policy_forward:
        moments["old-policy log-probs"] = log_probs
    if w.reference_forward:
        moments["reference log-probs"] = dict(log_probs)
    # the conversation re-rendered with the rm's template, which the rm run's algo.max_length may cut
    reward_rows = min(w.micro_batch, w.batch_size)
    moments["reward model forward"] = {"activations": m.forward_transient_bytes(arch, p, reward_rows, seq)}
    return moments


def online_phases(arch: Architecture, p: m.Precision, lora: LoraSettings, w: OnlineWorkload) -> list[Phase]:
    resident = online_resident(arch, p, lora, w)
    seq = w.prompt_len + w.new_tokens
    # TRL's generate() keeps no per-step logits (no output_scores): the KV cache of every completion at once
    rollout = _generation_moments(arch, p, w.batch_size, w.prompt_len, w.new_tokens, keep_logits=False)
    scored = _scored_tokens(p, w.rows, w.prompt_len, w.new_tokens)
    # disable_dropout=True (online_trl.training_args): no LoRA dropout copies
    update = {"backward": _trl_backward(arch, p, lora, w.rows, seq, dropout=False, scored=scored)}
    # held_out.evaluate: algo.batch_size prompts per generate call, hardware.micro_batch_size rows per forward
    gen_rows, score_rows = min(w.eval_prompts, w.batch_size), min(w.eval_prompts, w.micro_batch)
    return [
        Phase("rollout", resident, rollout),
        Phase("scoring", resident, _online_scoring_moments(arch, p, w)),
        Phase("update", resident, update),
        Phase("evaluation", resident, _held_out_moments(arch, p, gen_rows, score_rows, w.prompt_len, w.new_tokens)),
    ]
