"""The four PPO roles as adapters and heads on one copy of the base weights (or on separate models).

    role       share_base=true: one base, adapters switched          share_base=false: a model per role
    ---------  ----------------------------------------------------  ------------------------------------------
    policy     LoRA adapter "policy" + the LM head, trainable         causal LM + LoRA "policy"
               (a copy of algo.init_adapter when one is given)
    reference  the same model with adapters disabled                  a second causal LM, frozen
               (adapter "reference" = init_adapter, frozen)           (+ init_adapter, frozen)
    reward     adapter "reward" = the rm run's LoRA, + its score       the rm run's model (load_reward_run),
               head as a linear layer; frozen                          on whatever base that run used (+ the SFT
                                                                       adapter it started from, merged)
    value      adapter "value" + a linear head, both trainable and     a sequence classifier holding a trainable
               initialised from the reward role                        copy of the rm adapter and head (on the
                                                                       rm's merged start, as the reward)
    (value_model=policy, either layout: a trainable linear head on the policy's last hidden state, initialised
               from the reward model's score head; no value adapter, and one trunk pass serves both heads)

The rm adapter was trained on LlamaForSequenceClassification with LoRA on the same base modules
(model.layers.*), so its LoRA weights load onto the causal LM unchanged; its ``score`` head
becomes a separate ``nn.Linear``. A role is (model, adapter to activate, head); every forward
runs the decoder with position ids from the attention mask and applies the head to the last
hidden state, so no role needs a second copy of the base. The reward and value heads are float32 whatever
the base dtype (rlhf.modeling.models.float32_head: bf16 would round most AdamW updates away), and take
the base's hidden state cast to float32; the LoRA adapters are float32 through PEFT.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import GenerationConfig

from rlhf.errors import ConfigError, ModelLoadError
from rlhf.modeling.fingerprints import reward_init_adapter
from rlhf.modeling.generation import decode
from rlhf.modeling.models import (
    add_adapter,
    float32_head,
    load_adapter,
    load_causal_lm,
    load_reward_backbone,
    load_reward_run,
    lora_config,
    merge_adapter,
    place,
)
from rlhf.modeling.reward_scoring import score_conversations
from rlhf.modeling.token_math import position_ids, response_positions
from rlhf.run.job import Job
from rlhf.run.rundir import FinishedRun

log = logging.getLogger(__name__)

OFF = "<adapters disabled>"  # Role.adapter value: run the base with every adapter switched off
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SCORE_KEY = "base_model.model.score.weight"  # where a saved SEQ_CLS adapter keeps the score head
VALUE_HEAD = "value_head.safetensors"
VALUE_MODELS = ("adapter", "policy")  # algo.value_model: the value role's own adapter, or a head on the policy


def _base(model: nn.Module) -> nn.Module:
    """The transformers model under a PeftModel (adapters injected), or the model itself."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _decoder(model: nn.Module) -> nn.Module:
    """The transformer body (LlamaModel) of a causal LM or sequence classifier, adapters included."""
    return _base(model).get_decoder()


def _adapter_params(model: nn.Module, adapter: str) -> dict[str, nn.Parameter]:
    """Parameters of one named PEFT adapter (LoRA matrices and modules_to_save copies)."""
    return {name: p for name, p in model.named_parameters() if f".{adapter}." in name}


@dataclass
class Role:
    model: nn.Module  # a PeftModel or a plain transformers model
    adapter: str | None  # adapter to activate; OFF = adapters disabled; None = use the model as it is
    head: nn.Module | None  # last hidden state [..., H] -> LM logits [..., V] or a scalar [..., 1]


class _SharedRewardModel(nn.Module):
    """A reward role on the shared base (``role``: "reward", or a scorer added by ``Roles.attach_reward_adapter``)
    seen as a sequence classifier: ``.logits`` [B, 1] read at the last real token. It lets one function
    (reward_scoring.score_conversations) score both layouts."""

    def __init__(self, hidden_fn, head: nn.Module, role: str = "reward"):
        super().__init__()
        self.head = head
        self.role = role
        self._hidden_fn = hidden_fn  # a bound method of Roles; a plain attribute, not a submodule

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self._hidden_fn(self.role, input_ids, attention_mask)
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.long() * positions).argmax(-1)  # rightmost real token, either padding side
        return SimpleNamespace(logits=self.head(hidden[torch.arange(len(last), device=last.device), last]))


class Roles:
    """Policy, reference, value (and, on a shared base, reward) forwards; reward scoring; saving."""

    def __init__(
        self,
        tokenizer,
        roles: dict[str, Role],
        reward_model: nn.Module | None,
        reward_tokenizer,
        trainable: dict[str, nn.Parameter],
        shared: bool,
    ):
        """``reward_model`` None: score with the shared base's "reward" role."""
        self.tokenizer = tokenizer
        self.roles = roles
        self.reward_model = (
            reward_model if reward_model is not None else _SharedRewardModel(self.hidden, roles["reward"].head)
        )
        self.reward_tokenizer = reward_tokenizer
        self.trainable = trainable
        self.shared = shared
        self._trainable_ids = {id(p) for p in trainable.values()}
        models = (
            [r.model for r in roles.values()]
            + [self.reward_model]
            + [r.head for r in roles.values() if r.head is not None]
        )
        self._modules = list({id(m): m for m in models}.values())
        for module in self._modules:
            _without_dropout(module)
        self._fix_grad_flags()
        self.checkpointing = False
        self.autocast_dtype: torch.dtype | None = None  # set by build_roles from hardware.bf16
        # The adapter the policy (and a shared base's reference) started from, set by build_roles: a resumed
        # run checks it is still the one its checkpoint was written with (rlhf/algos/ppo/checkpoint.py).
        self.init_adapter: Path | None = None

    def precision(self, generation: bool = False):
        """Mixed precision for forwards (hardware.bf16): matmuls in bf16, weights and gradients as stored.

        Generation on CPU runs without autocast: decoding a few rows a token at a time reads every weight per
        step, and autocast of fp32 weights adds a cast of each per step (BENCHMARKS.md: 6.4 s vs 4.9 s per
        rollout); bf16 weights (hardware=cpu_bf16) decode in bf16 without it (BENCHMARKS.md "Decoding"). The
        old log-probs PPO compares against then come from the scoring pass, under autocast like the update
        (``generation_matches_scoring`` is false)."""
        if self.autocast_dtype is None or (generation and self.device.type == "cpu"):
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @property
    def device(self) -> torch.device:
        return next(self.roles["policy"].model.parameters()).device

    def _fix_grad_flags(self) -> None:
        # PEFT's set_adapter / disable_adapter flip requires_grad of adapter weights; only ours train.
        for module in self._modules:
            for p in module.parameters():
                p.requires_grad_(id(p) in self._trainable_ids)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in the backward pass of the trainable roles (less memory, ~30% more compute)."""
        for role in self.roles.values():
            if any(id(p) in self._trainable_ids for p in role.model.parameters()):
                _base(role.model).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.checkpointing = True

    @contextmanager
    def grad_passes(self):
        """Around forward+backward passes: transformers checkpoints only in train mode, which is safe here
        because every dropout has p=0. Generation and scoring stay in eval mode (and keep their KV cache).
        Run each backward inside ``active(role)`` of its forward: checkpointed layers recompute the forward
        during backward with whichever adapter is active then."""
        if self.checkpointing:
            for module in self._modules:
                module.train()
        try:
            yield
        finally:
            for module in self._modules:
                module.eval()

    @contextmanager
    def active(self, name: str):
        """Switch the role's model to the role's adapter for the duration of the block."""
        role = self.roles[name]
        if role.adapter == OFF:
            switch = role.model.disable_adapter()
        else:
            if role.adapter is not None:
                role.model.set_adapter(role.adapter)
            switch = nullcontext()
        try:
            with switch:
                self._fix_grad_flags()
                yield role
        finally:
            self._fix_grad_flags()

    def hidden(self, name: str, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, L] ids and mask -> the role's last hidden state [B, L, H]."""
        with self.active(name) as role, self.precision():
            out = _decoder(role.model)(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids(attention_mask),
                use_cache=False,
            )
        return out.last_hidden_state

    def response_head(
        self, name: str, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int
    ) -> torch.Tensor:
        """input_ids/attention_mask [B, P+T] = [left-padded prompt | response], P = prompt_len ->
        the role's head on the T states that predict (policy, reference) or value (value) the response
        tokens: [B, T, V] logits or [B, T, 1]. The state at i predicts token i+1, hence P-1 .. P+T-2."""
        hidden = response_positions(self.hidden(name, input_ids, attention_mask), prompt_len)
        with self.precision():
            return self.roles[name].head(hidden)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        config: GenerationConfig,
        with_logits: bool = False,
        with_values: bool = False,
    ):
        """Sample with the policy: [B, P] left-padded prompts -> [B, P + T] (T <= max_new_tokens); with
        ``with_logits`` also the raw logits [B, T, V] each token was sampled from (before temperature);
        with ``with_values`` (a value head on the policy) also the values [B, T] of the states those
        logits came from, read off the LM head's input at each step instead of another forward."""
        with self.active("policy") as role, self.precision(generation=True):
            if not with_logits:
                return decode(role.model, input_ids, attention_mask, config)
            states = []  # [B, H] per decoding step: the last position's hidden state, as the LM head sees it
            hook = (
                role.head.register_forward_hook(lambda _m, args, _out: states.append(args[0][:, -1]))
                if with_values
                else None
            )
            try:
                out = decode(
                    role.model, input_ids, attention_mask, config, output_logits=True, return_dict_in_generate=True
                )
            finally:
                if hook is not None:
                    hook.remove()
            logits = torch.stack(out.logits, 1)
            if not with_values:
                return out.sequences, logits
            if len(states) != logits.shape[1]:
                raise RuntimeError(f"the LM head ran {len(states)} times for {logits.shape[1]} generated tokens")
            return out.sequences, logits, self.roles["value"].head(torch.stack(states, 1)).squeeze(-1).float()

    @property
    def value_on_policy(self) -> bool:
        """Whether the value head reads the policy's hidden states (algo.value_model=policy)."""
        policy, value = self.roles["policy"], self.roles["value"]
        return value.model is policy.model and value.adapter == policy.adapter

    def policy_and_value_heads(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For a value head on the policy: one trunk pass, both heads on the T response states (as
        ``response_head``) -> logits [B, T, V] and values [B, T] float32."""
        hidden = response_positions(self.hidden("policy", input_ids, attention_mask), prompt_len)
        with self.precision():
            return self.roles["policy"].head(hidden), self.roles["value"].head(hidden).squeeze(-1).float()

    @property
    def generation_matches_scoring(self) -> bool:
        """Whether generation computes the policy's log-probs as the scoring and update forwards do (fp32
        weights, no autocast), so the old log-probs can come from the sampling logits instead of another forward.
        Not with bf16 weights even without autocast: decoding with the KV cache and a forward over the whole
        sequence round differently, by far more in bf16 than in fp32, and the PPO ratio must start at 1."""
        return self.autocast_dtype is None and _base(self.roles["policy"].model).dtype == torch.float32

    def scores(self, conversations: list[list[dict]], batch_size: int, max_length: int) -> torch.Tensor:
        """Reward-model scores [N] of full conversations, rendered exactly as in the rm run's training."""
        with self.precision():
            scores = score_conversations(
                self.reward_model, self.reward_tokenizer, conversations, batch_size, max_length
            )
        return scores.float().to(self.device)

    def attach_reward_adapter(self, name: str, adapter_dir: Path) -> nn.Module:
        """Another frozen reward model, an rm run's adapter/ trained on the policy's base (e.g. the sentinel's
        judge), as adapter ``name`` + its score head on the policy's model: one small adapter instead of a
        second copy of the base. Returns it as a sequence classifier for reward_scoring.score_conversations.
        Training is untouched: the adapter is frozen and inactive outside its forwards, and the global RNG
        (drawn from to initialise the weights that are then overwritten) is left as it was."""
        model = self.roles["policy"].model
        config, lora, score = read_reward_adapter(adapter_dir)
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):  # the random inits of the LoRA weights and the head
            _load_lora(model, config, lora, name)
            head = _linear_head(score, model, trainable=False)
        model.set_adapter(self.roles["policy"].adapter)
        self.roles[name] = Role(model, name, head)
        _without_dropout(model)  # the new adapter's LoRA dropout too
        self._fix_grad_flags()
        return _SharedRewardModel(self.hidden, head, name)

    def save(self, out: Path) -> None:
        """The policy adapter in PEFT format at ``out`` (+ tokenizer); the value adapter and head in out/value/."""
        out = Path(out)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=out.name + ".tmp-") as tmp:
            policy = self.roles["policy"].model
            policy.save_pretrained(tmp, selected_adapters=["policy"], safe_serialization=True)
            value = self.roles["value"]
            if (
                not self.shared and not self.value_on_policy
            ):  # a sequence classifier whose head is saved with its adapter
                value.model.save_pretrained(Path(tmp) / "value", safe_serialization=True)
            else:  # the "value" adapter (none with value_model=policy) and the head beside it
                if not self.value_on_policy:
                    value.model.save_pretrained(tmp, selected_adapters=["value"], safe_serialization=True)
                (Path(tmp) / "value").mkdir(exist_ok=True)
                save_file({"weight": value.head.weight.detach().contiguous()}, str(Path(tmp) / "value" / VALUE_HEAD))
            if out.exists():
                shutil.rmtree(out)
            # PEFT writes a named adapter into a subfolder; the policy goes to the top of out/.
            shutil.move(str(Path(tmp) / "policy"), out)
            shutil.move(str(Path(tmp) / "value"), out / "value")
        self.tokenizer.save_pretrained(out)

    def load_policy(self, adapter_dir: Path) -> None:
        """Put the policy weights ``save`` wrote at ``adapter_dir`` (e.g. an earlier checkpoint's adapter/) back
        into the live policy adapter; the value role and the optimizer are left as they are."""
        weights = Path(adapter_dir) / ADAPTER_WEIGHTS
        if not weights.is_file():
            raise ModelLoadError(f"{adapter_dir} has no {ADAPTER_WEIGHTS}: the checkpoint's policy adapter is gone")
        policy = self.roles["policy"]
        with safe_open(str(weights), "pt") as handle:
            state = {k: handle.get_tensor(k) for k in handle.keys()}
        with torch.no_grad():
            result = set_peft_model_state_dict(policy.model, state, adapter_name=policy.adapter)
        missing = [k for k in result.missing_keys if f".{policy.adapter}." in k]
        if missing or result.unexpected_keys:
            raise ModelLoadError(
                f"{adapter_dir} does not fit the policy adapter (missing {missing[:2]}, "
                f"unexpected {list(result.unexpected_keys)[:2]}): was it saved by this run?"
            )


# --------------------------------------------------------------------------- building


def _with_policy_adapter(lm, job: Job, init_adapter: Path | None, reference_copy: bool) -> PeftModel:
    """A PeftModel with a trainable adapter "policy": fresh LoRA, or a copy of ``init_adapter``
    (then, with ``reference_copy``, a frozen second copy named "reference")."""
    if init_adapter is None:
        return get_peft_model(lm, lora_config(job.lora, "CAUSAL_LM"), adapter_name="policy")
    model = PeftModel.from_pretrained(lm, str(init_adapter), adapter_name="policy", is_trainable=True)
    if reference_copy:
        model.load_adapter(str(init_adapter), adapter_name="reference", is_trainable=False)
    return model


def read_reward_adapter(adapter_dir: Path) -> tuple[LoraConfig, dict[str, torch.Tensor], torch.Tensor]:
    """(LoRA config for a causal LM, LoRA weights, score weight [1, H]) of an rm run's adapter/."""
    weights = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"{adapter_dir} has no {ADAPTER_WEIGHTS}: point algo.reward_model at a finished rm run")
    config = copy.deepcopy(LoraConfig.from_pretrained(str(adapter_dir)))
    config.task_type, config.modules_to_save, config.inference_mode = "CAUSAL_LM", None, False
    with safe_open(str(weights), "pt") as handle:
        keys = list(handle.keys())
        if SCORE_KEY not in keys:
            raise ConfigError(f"{adapter_dir} holds no reward head ({SCORE_KEY}): is it an rm run's adapter?")
        lora = {k: handle.get_tensor(k) for k in keys if ".lora_" in k}
        score = handle.get_tensor(SCORE_KEY)
    return config, lora, score


def _without_dropout(module: nn.Module) -> None:
    """Dropout off for good (p=0, eval mode): the PPO ratio must compare like with like."""
    module.eval()
    for sub in module.modules():
        if isinstance(sub, nn.Dropout):
            sub.p = 0.0


def _load_lora(model: PeftModel, config: LoraConfig, weights: dict[str, torch.Tensor], name: str) -> None:
    model.add_adapter(name, config)
    result = set_peft_model_state_dict(model, weights, adapter_name=name)
    missing = [k for k in result.missing_keys if f".{name}." in k]
    if missing or result.unexpected_keys:
        raise ModelLoadError(
            f"the reward adapter does not fit this base as adapter '{name}' (missing {missing[:2]}, "
            f"unexpected {list(result.unexpected_keys)[:2]}): train the reward model on the same model, "
            "or set algo.share_base=false"
        )


def _linear_head(weight: torch.Tensor, like: nn.Module, trainable: bool) -> nn.Linear:
    """A linear head holding ``weight`` [out, in], float32 whatever the base dtype, on ``like``'s device."""
    head = float32_head(nn.Linear(weight.shape[1], weight.shape[0], bias=False, device=next(like.parameters()).device))
    with torch.no_grad():
        head.weight.copy_(weight)
    head.weight.requires_grad_(trainable)
    return head


def build_roles(
    job: Job, rm: FinishedRun, share_base: bool, init_adapter: Path | None, value_model: str = "adapter"
) -> Roles:
    """Load the four roles; ``rm`` is a finished rm run, ``init_adapter`` an adapter directory or None,
    ``value_model`` one of VALUE_MODELS."""
    if not job.lora.enabled:
        raise ConfigError(
            f"lora={job.lora.name}: PPO trains LoRA adapters for the policy and value roles; pick lora=r16 (or r8, r64)"
        )
    path, tokenizer = job.model_path, job.tokenizer
    lm = load_causal_lm(path, job.model, job.hardware, tokenizer)
    policy = place(_with_policy_adapter(lm, job, init_adapter, reference_copy=share_base), job.hardware)
    lm_head = _base(policy).get_output_embeddings()
    if share_base:
        roles = _shared_roles(tokenizer, policy, lm_head, rm.adapter, init_adapter, value_model)
    else:
        roles = _separate_roles(job, path, tokenizer, policy, lm_head, rm, init_adapter, value_model)
    if job.hardware.gradient_checkpointing:
        roles.enable_gradient_checkpointing()
    if job.hardware.bf16:
        roles.autocast_dtype = torch.bfloat16
    roles.init_adapter = init_adapter
    return roles


def _shared_roles(
    tokenizer, model: PeftModel, lm_head, rm_adapter: Path, init_adapter: Path | None, value_model: str
) -> Roles:
    config, lora, score = read_reward_adapter(rm_adapter)
    own_value_adapter = value_model == "adapter"
    for name in ("reward", "value") if own_value_adapter else ("reward",):
        _load_lora(model, config, lora, name)
    model.set_adapter("policy")
    reward_head = _linear_head(score, model, trainable=False)
    value_head = _linear_head(score, model, trainable=True)
    roles = {
        "policy": Role(model, "policy", lm_head),
        "reference": Role(model, "reference" if init_adapter else OFF, lm_head),
        "reward": Role(model, "reward", reward_head),
        "value": Role(model, "value" if own_value_adapter else "policy", value_head),
    }
    trainable = {
        **{f"policy:{n}": p for n, p in _adapter_params(model, "policy").items()},
        **{f"value:{n}": p for n, p in _adapter_params(model, "value").items()},
        "value:head.weight": value_head.weight,
    }
    return Roles(tokenizer, roles, reward_model=None, reward_tokenizer=tokenizer, trainable=trainable, shared=True)


def _separate_roles(
    job: Job,
    path: str,
    tokenizer,
    policy: PeftModel,
    lm_head,
    rm: FinishedRun,
    init_adapter: Path | None,
    value_model: str,
) -> Roles:
    reference = place(load_causal_lm(path, job.model, job.hardware, tokenizer), job.hardware)
    if init_adapter is not None:
        reference = place(load_adapter(reference, init_adapter), job.hardware)
    reward_tokenizer, reward = load_reward_run(rm, job.hardware)
    reward = place(reward, job.hardware)
    rm_on_same_base = rm.model.same_base(job.model)
    if value_model == "policy":
        score = read_reward_adapter(rm.adapter)[2] if rm_on_same_base else None
        return _separate_roles_value_on_policy(tokenizer, policy, lm_head, reference, reward, reward_tokenizer, score)
    backbone = load_reward_backbone(path, job.model, job.hardware, tokenizer)
    if rm_on_same_base:
        if (rm_start := reward_init_adapter(rm)) is not None:  # the value copy starts where the reward model did
            backbone = merge_adapter(backbone, rm_start)
        value = load_adapter(backbone, rm.adapter, trainable=True)
    else:
        log.warning("the reward model is on another base: the value adapter and head start fresh, not from it")
        value = add_adapter(backbone, job.lora, "SEQ_CLS", modules_to_save=["score"])
    value = place(value, job.hardware)
    roles = {
        "policy": Role(policy, "policy", lm_head),
        "reference": Role(reference, None, _base(reference).get_output_embeddings()),
        "value": Role(value, None, _base(value).score),
    }
    trainable = {
        **{f"policy:{n}": p for n, p in _adapter_params(policy, "policy").items()},
        **{f"value:{n}": p for n, p in _adapter_params(value, "default").items()},
    }
    return Roles(tokenizer, roles, reward, reward_tokenizer, trainable, shared=False)


def _separate_roles_value_on_policy(
    tokenizer, policy: PeftModel, lm_head, reference, reward, reward_tokenizer, score: torch.Tensor | None
) -> Roles:
    """share_base=false with value_model=policy: no value model of its own, a head on the policy,
    initialised from the reward model's score head [1, H] (None: the rm is on another base)."""
    if score is None:  # that head reads another model's hidden states: start the value head at zero
        log.warning("the reward model is on another base: the value head starts at zero, not from it")
        score = torch.zeros(1, _base(policy).config.hidden_size)
    value_head = _linear_head(score, policy, trainable=True)
    roles = {
        "policy": Role(policy, "policy", lm_head),
        "reference": Role(reference, None, _base(reference).get_output_embeddings()),
        "value": Role(policy, "policy", value_head),
    }
    trainable = {
        **{f"policy:{n}": p for n, p in _adapter_params(policy, "policy").items()},
        "value:head.weight": value_head.weight,
    }
    return Roles(tokenizer, roles, reward, reward_tokenizer, trainable, shared=False)
