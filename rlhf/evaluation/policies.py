"""Which policies to compare, and one copy of the base weights that serves them all.

A policy is ``base`` (the model with no adapter) or a finished policy run directory (``POLICY_ALGOS``: sft,
dpo, ppo, grpo, rloo; a sweep job) whose ``adapter/`` is a PEFT CausalLM LoRA adapter on the base its
``.hydra/config.yaml`` names. Its reference, for KL and the implicit reward, is the base with adapters disabled, or the
run's ``algo.init_adapter`` (e.g. an SFT adapter) when it started from one, as DPO, PPO, GRPO and RLOO use it.

:class:`PolicyBank` loads the base once and attaches every adapter by name (PeftModel.load_adapter),
switching with ``set_adapter`` / ``disable_adapter``, so N policies cost one base plus N small adapters.

The judge (:func:`resolve_judge`) is a reward-model run that must not be the one a compared PPO / GRPO / RLOO
policy optimised (:func:`trained_against`): a policy scored by its own reward model looks better than it is.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf
from peft import PeftModel
from transformers import GenerationConfig

from rlhf.config import ModelSettings
from rlhf.data.gold_judge import has_gold_judge
from rlhf.data.halves import check_disjoint
from rlhf.errors import ConfigError
from rlhf.modeling.generation import decode
from rlhf.modeling.token_math import response_logits
from rlhf.run.rundir import (
    POLICY_ALGOS,
    REWARD_ALGOS,
    FinishedRun,
    check_policy_adapter,
    finished_run,
    load_run_config,
    load_summary,
    resolve_adapter,
)

log = logging.getLogger(__name__)

BASE = "base"
REWARD_TRAINED = ("ppo", "grpo", "rloo")  # policies trained against a reward model run (their algo.reward_model)


@dataclass(frozen=True)
class PolicySpec:
    """One compared policy. ``adapter`` None means the base model; ``reference`` None means the base."""

    name: str
    run_dir: Path | None = None
    algo: str | None = None
    adapter: Path | None = None
    reference: Path | None = None
    summary: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_base(self) -> bool:
        return self.adapter is None

    def describe(self) -> dict:
        return {
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "algo": self.algo or BASE,
            "adapter": str(self.adapter) if self.adapter else None,
            "reference": str(self.reference) if self.reference else BASE,
        }


def _is_latest_link(path: Path, outputs_root: Path) -> bool:
    """Whether ``path`` names ``<outputs_root>/latest/<algo>`` (a pointer that exists once that algorithm ran)."""
    try:
        return Path(path).absolute().parent == (Path(outputs_root) / "latest").absolute()
    except OSError:
        return False


def _reference_adapter(run: FinishedRun, key: str) -> Path | None:
    """The run's DPO/PPO reference when it started from ``algo.init_adapter``; None = the base."""
    value = run.summary.get("init_adapter") or OmegaConf.select(run.config, "algo.init_adapter", default=None)
    if not value:
        return None
    if "latest" in Path(value).parts:
        log.warning(
            "%s: its init adapter %s is a 'latest' pointer; if a newer run moved it, the reference differs", key, value
        )
    try:
        return resolve_adapter(value, "algo.init_adapter").resolve()
    except ConfigError as err:
        raise ConfigError(
            f"{key}={run.run_dir}: the run's reference for KL and the implicit reward is gone ({err}): "
            f"restore that adapter or leave this policy out ({key}=null)"
        ) from None


def resolve_policy(name: str, value: str, model: ModelSettings) -> PolicySpec:
    """A ``policies.<name>`` entry: ``base`` or a finished policy run directory on ``model``."""
    key = f"policies.{name}"
    if str(value) == BASE:
        return PolicySpec(name)
    run = finished_run(
        value,
        key,
        model=model,
        base_fix=f"all policies share one base: add model={{run_model}}, or leave it out ({key}=null)",
    )
    if run.algo == "rm":
        raise ConfigError(
            f"{key}={value}: that is a reward model run, not a policy; judge with it instead (judge={value})"
        )
    if run.algo not in POLICY_ALGOS:
        raise ConfigError(
            f"{key}={value}: a {run.algo!r} run is not a policy; expected one of {', '.join(POLICY_ALGOS)}"
        )
    adapter = check_policy_adapter(run.adapter, key, value)
    return PolicySpec(name, run.run_dir, run.algo, adapter, _reference_adapter(run, key), run.summary)


def resolve_policies(
    policies: Mapping[str, str | None], model: ModelSettings, outputs_root: Path, explicit: set[str] = frozenset()
) -> list[PolicySpec]:
    """The compared policies, in config order. ``null`` leaves one out; a default ``<outputs_root>/latest/<algo>``
    that does not exist yet is skipped with a warning; anything else that is not a policy run is an error.
    ``explicit`` names the entries the user set on the command line (never skipped)."""
    specs = []
    for name, value in policies.items():
        if value is None:
            continue
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", str(name)):
            raise ConfigError(
                f"policies.{name}: use letters, digits, '_' or '-' in policy names (e.g. policies.dpo_beta01)"
            )
        if not isinstance(value, str):
            raise ConfigError(
                f"policies.{name}={value!r}: give 'base', a run directory or null "
                f"(a '.' in a policy name nests it; use e.g. +policies.dpo_beta01=PATH)"
            )
        path = Path(str(value))
        if str(value) != BASE and name not in explicit and not path.exists() and _is_latest_link(path, outputs_root):
            log.warning(
                "policies.%s=%s does not exist yet (run `python train.py algo=%s` first); leaving it out",
                name,
                value,
                path.name,
            )
            continue
        specs.append(resolve_policy(name, str(value), model))
    if not specs:
        raise ConfigError(
            "no policies to compare: every entry of policies is null or missing; "
            "e.g. policies.base=base policies.dpo=<a dpo run>"
        )
    return specs


def trained_against(spec: PolicySpec) -> Path | None:
    """The real path of the reward-model run a PPO / GRPO / RLOO policy was trained against, else None.

    Its summary.json records the run it resolved at training time; an older run falls back to its config's
    ``algo.reward_model`` (null: ``<outputs_root>/latest/rm``), a pointer that may have moved since (warned, as
    for init adapters)."""
    if spec.algo not in REWARD_TRAINED or spec.run_dir is None:
        return None
    value = spec.summary.get("reward_model")
    if not value:
        config = load_run_config(spec.run_dir)
        value = OmegaConf.select(config, "algo.reward_model", default=None) or (
            Path(str(OmegaConf.select(config, "outputs_root", default="outputs"))) / "latest" / "rm"
        )
        if "latest" in Path(str(value)).parts:
            log.warning(
                "policies.%s: trained against %s, a 'latest' pointer; if a newer run moved it, the proxy check "
                "compares with that newer run",
                spec.name,
                value,
            )
    path = Path(str(value)).expanduser()
    return path.resolve() if path.exists() else None


@dataclass(frozen=True)
class Judge:
    """The reward-model run that scores every response (the RM columns), and how far to trust it.

    ``proxy_of``: the compared policies trained against this very run (its scores of them are not independent).
    ``independent``: whether it is evaluate's independent judge; False where the gold judge is (hh_synthetic), so
    this run is the proxy, PPO's reward model, shown beside the gold score."""

    run: FinishedRun
    proxy_of: list[str]
    independent: bool


def resolve_judge(
    value: str | None,
    model: ModelSettings,
    outputs_root: Path,
    specs: list[PolicySpec],
    dataset: str,
    allow_proxy: bool,
) -> Judge:
    """The judge reward model: ``judge=auto`` is ``<outputs_root>/latest/rm`` (the proxy) where ``dataset`` has the
    gold judge, else ``<outputs_root>/latest/judge`` (``algo=judge``: the other half of the pairs); or a finished
    rm / judge run on the same base as the policies. Without a gold judge, one that a compared policy was trained
    against is refused unless ``allow_proxy`` (evaluation.allow_proxy_judge)."""
    gold = has_gold_judge(dataset)
    auto = value is None or str(value) == "auto"
    path = Path(outputs_root) / "latest" / ("rm" if gold else "judge") if auto else Path(str(value))
    if not path.exists():
        if auto and not gold:
            raise ConfigError(
                f"judge=auto: dataset={dataset} has no gold judge and {path} does not exist; train the independent "
                f"judge (`python train.py algo=judge dataset={dataset}`) or set judge=<rm or judge run directory>"
            )
        raise ConfigError(
            f"judge={path}: no reward model there; train one (`python train.py algo=rm`) "
            "or set judge=<rm run directory>"
        )
    run = finished_run(
        path,
        "judge",
        REWARD_ALGOS,
        model,
        base_fix=f"pick an rm run on {model.name} (`python train.py algo=rm model={model.name}`)",
    )
    proxy_of = [spec.name for spec in specs if trained_against(spec) == run.run_dir]
    if proxy_of and not gold and not allow_proxy:
        runs = ", ".join(f"policies.{s.name}={s.run_dir}" for s in specs if s.name in proxy_of)
        raise ConfigError(
            f"judge={'auto' if auto else path}: {run.run_dir} is the reward model {runs} was trained against, not an "
            "independent judge; "
            f"train one on the other half (`python train.py algo=judge dataset={dataset}`, then judge=auto) "
            "or set evaluation.allow_proxy_judge=true"
        )
    if proxy_of:
        log.warning("judge %s is the reward model %s optimised: its scores of them are not independent",
                    run.run_dir, ", ".join(proxy_of))  # fmt: skip
    elif not gold:
        check_judge_pairs("judge", run, specs)
    return Judge(run, proxy_of, independent=not gold and not proxy_of)


def check_judge_pairs(key: str, run: FinishedRun, specs: list[PolicySpec]) -> None:
    """Refuse (one line naming ``key``) a judge whose training pairs may overlap those of a compared policy: a DPO /
    SFT policy's own, or those of the reward model a PPO / GRPO / RLOO policy optimised; checked by content, from the
    half each summary.json records (rlhf/data/halves.py), not by path."""
    for spec in specs:
        if spec.run_dir is None:
            continue
        against = trained_against(spec)
        if spec.algo in REWARD_TRAINED and against is not None:
            role, other_dir, other = f"the reward model policies.{spec.name} optimised", against, load_summary(against)
        elif spec.algo in ("dpo", "sft"):
            role, other_dir, other = f"policies.{spec.name}", spec.run_dir, spec.summary
        else:
            continue
        check_disjoint(key, run.run_dir, run.summary, role, other_dir, other)


class PolicyBank:
    """One base model; adapters attached by name. ``use(adapter)`` activates one (None = the base)."""

    def __init__(self, lm, tokenizer):
        self.model = lm
        self.tokenizer = tokenizer
        self._names: dict[Path, str] = {}
        lm.eval()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def attach(self, adapter_dir: Path | None) -> str | None:
        """Load ``adapter_dir`` once (deduplicated by path); returns its adapter name, or None for the base."""
        if adapter_dir is None:
            return None
        key = Path(adapter_dir).resolve()
        if key not in self._names:
            name = f"adapter{len(self._names)}"  # peft names are module keys: no dots
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(key), adapter_name=name, is_trainable=False)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(key), adapter_name=name, is_trainable=False)
            self.model.eval()
            self._names[key] = name
        return self._names[key]

    @contextlib.contextmanager
    def use(self, adapter: str | None) -> Iterator[torch.nn.Module]:
        """Inside, ``self.model`` runs as the named adapter, or as the base with adapters disabled."""
        if adapter is None:
            if isinstance(self.model, PeftModel):
                with self.model.disable_adapter():
                    yield self.model
            else:
                yield self.model
        else:
            self.model.set_adapter(adapter)
            yield self.model

    def _transformer(self):
        return self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model

    @property
    def decoding_matches_scoring(self) -> bool:
        """Whether the decoding's logits give the policy's log-probs as a forward over the whole sequence does:
        with fp32 weights (to rounding); not with bf16 weights, where cached decoding rounds differently."""
        return self._transformer().dtype == torch.float32

    def view(self, policy: str | None, reference: str | None) -> PolicyView:
        return PolicyView(self, policy, reference)


class PolicyView:
    """A policy and its reference seen through the interface rlhf/modeling/generation.py samples from: tokenizer,
    device, ``generate`` with the policy, ``response_head`` for the "policy" and "reference" roles."""

    def __init__(self, bank: PolicyBank, policy: str | None, reference: str | None):
        self.bank = bank
        self.adapters = {"policy": policy, "reference": reference}
        self.tokenizer = bank.tokenizer

    @property
    def device(self) -> torch.device:
        return self.bank.device

    value_on_policy = False  # no value head: sample(..., with_logprobs=True) asks for no values

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        config: GenerationConfig,
        with_logits: bool = False,
        with_values: bool = False,
    ):
        """[B, P] left-padded prompts -> [B, P + T] with the policy (generation.decode, as PPO's rollouts); with
        ``with_logits`` also the raw logits [B, T, V] each token was drawn from, so the policy's log-probs for KL
        come from the decoding itself (as PPO's Roles.generate gives them)."""
        if with_values:
            raise ValueError("evaluation's policies have no value head")
        with self.bank.use(self.adapters["policy"]) as model:
            if not with_logits:
                return decode(model, input_ids, attention_mask, config)
            out = decode(model, input_ids, attention_mask, config, output_logits=True, return_dict_in_generate=True)
            return out.sequences, torch.stack(out.logits, 1)

    @torch.no_grad()
    def response_head(
        self, role: str, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int
    ) -> torch.Tensor:
        """[B, P+T] ids/mask ([left-padded prompt | response]) -> LM logits [B, T, V] that score the T response
        tokens."""
        transformer = self.bank._transformer()
        with self.bank.use(self.adapters[role]):
            return response_logits(transformer, input_ids, attention_mask, prompt_len)
