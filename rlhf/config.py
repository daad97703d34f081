"""Typed views of the config groups, with range checks.

The YAML files under conf/ hold every default; these dataclasses hold none. They give each group a
type, reject unknown or missing keys, and check ranges, raising :class:`ConfigError` with the bad
value and the fix. Library code takes these objects, never the whole Hydra cfg. The shared groups
live here; each algorithm's own settings live in its module (rlhf/algos/<name>.py, ``Settings``).
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlhf.errors import ConfigError

log = logging.getLogger(__name__)


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether a plain (resolved) YAML value fits a field annotation such as ``float | None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, annotation)


def from_node(schema: type, node: DictConfig | dict, group: str):
    """Build ``schema`` from one config group, checking keys and types; ``group`` names it in errors."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {group}.{unknown[0]}: valid keys of '{group}' are {', '.join(sorted(fields))}")
    missing = sorted(set(fields) - set(values))
    if missing:
        where = group.split(".")[0]  # the config group file that holds this node
        raise ConfigError(
            f"{group}.{missing[0]} is missing: add it to conf/{where}/*.yaml or set +{group}.{missing[0]}=..."
        )
    for name, value in values.items():
        if dataclasses.is_dataclass(hints[name]):  # a nested node, e.g. algo.sampling
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{group}.{name}={value!r} has the wrong type: expected a mapping of "
                    f"{', '.join(f.name for f in dataclasses.fields(hints[name]))}"
                )
            values[name] = from_node(hints[name], value, f"{group}.{name}")
            continue
        if not _type_ok(value, hints[name]):
            raise ConfigError(f"{group}.{name}={value!r} has the wrong type: expected {hints[name]}")
        if _wants_float(value, hints[name]):
            values[name] = float(value)  # YAML's 32 for a float field (``float`` or ``float | None``) is 32.0
    return schema(**values)


def _wants_float(value: Any, annotation: Any) -> bool:
    """Whether an int ``value`` fills a field that takes floats but not ints (``float``, ``float | None``)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    options = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    return float in options and int not in options


def check(condition: bool, key: str, value: Any, rule: str) -> None:
    """Raise a ConfigError quoting ``key=value`` and the rule it breaks (the fix) unless ``condition``."""
    if not condition:
        raise ConfigError(f"{key}={value!r} is out of range: {rule}")


def check_init_adapter_value(value: str | None) -> None:
    """``algo.init_adapter`` names a run or adapter directory, or is null (start from the base); an empty
    string (``algo.init_adapter=``) is neither, and would otherwise mean the base without saying so."""
    if value is not None:
        check(bool(value.strip()), "algo.init_adapter", value, "give a run or adapter directory, or null for the base")


def check_choice(key: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"unknown {key}={value!r}: valid values are {', '.join(map(str, choices))}")


@dataclass(frozen=True)
class LoraSettings:
    name: str
    r: int | None
    alpha: float | None
    dropout: float | None
    target_modules: list | None

    @property
    def enabled(self) -> bool:
        return self.r is not None

    def __post_init__(self):
        if self.r is None:
            return
        check(
            self.r >= 1,
            "lora.r",
            self.r,
            "the LoRA rank must be >= 1 (e.g. lora=r16); use lora=none for full fine-tuning",
        )
        check(self.alpha is not None and self.alpha > 0, "lora.alpha", self.alpha, "must be > 0 (usually 2 * r)")
        check(self.dropout is not None and 0 <= self.dropout < 1, "lora.dropout", self.dropout, "must be in [0, 1)")
        check(
            bool(self.target_modules),
            "lora.target_modules",
            self.target_modules,
            "name at least one module, e.g. [q_proj, v_proj]",
        )


@dataclass(frozen=True)
class ModelSettings:
    name: str
    source: str
    name_or_path: str | None
    gguf_package: str | None
    gguf_file: str | None
    cache_dir: str
    pad_token: str | None
    chat_template: str | None
    trust_remote_code: bool
    tiny: dict | None

    def __post_init__(self):
        check_choice("model.source", self.source, ("gguf", "pretrained", "tiny"))
        if self.source == "pretrained" and not self.name_or_path:
            raise ConfigError("model.source=pretrained needs model.name_or_path=<hub id or local directory>")
        if self.source in ("gguf", "tiny") and not (self.gguf_package and self.gguf_file) and not self.name_or_path:
            raise ConfigError(
                f"model.source={self.source} needs model.gguf_package and model.gguf_file (the tokenizer source)"
            )
        if self.source == "tiny" and not self.tiny:
            raise ConfigError("model.source=tiny needs a model.tiny mapping (hidden_size, num_hidden_layers, ...)")

    def differences(self, other: ModelSettings) -> dict[str, tuple[Any, Any]]:
        """``model.<key>`` -> (this value, ``other``'s) for each key (nested ones dotted) that loads other weights or
        another tokenizer: what :meth:`same_base` compares, named."""

        def flat(value: Any, prefix: str) -> dict[str, Any]:
            if isinstance(value, dict):
                return {k: v for key, sub in value.items() for k, v in flat(sub, f"{prefix}.{key}").items()}
            return {prefix: value}

        mine, theirs = (flat({k: v for k, v in dataclasses.asdict(m).items() if k != "cache_dir"}, "model")
                        for m in (self, other))  # fmt: skip
        return {
            k: (mine.get(k), theirs.get(k)) for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)
        }

    def same_base(self, other: ModelSettings) -> bool:
        """Whether two model configs load the same weights and tokenizer (the cache location does not matter):
        the rule every adapter, reward model and judge is checked by before it is put on this base."""
        strip = lambda m: {k: v for k, v in dataclasses.asdict(m).items() if k != "cache_dir"}  # noqa: E731
        return strip(self) == strip(other)


CPUINFO = Path("/proc/cpuinfo")  # Linux; where the CPU's flags are read
# CPU flags of native bf16 matmul units: AVX512-BF16 (AMD Zen 4, Intel Cooper Lake and later) and AMX
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
AUTO = "auto"  # hardware=auto (conf/hardware/auto.yaml): cpu_bf16's settings where bf16 is native, cpu's elsewhere


def native_bf16_reason(cpuinfo: str | None = None) -> str | None:
    """Why bf16 matmuls run natively here (a CUDA GPU that supports bf16; a CPU whose flags include AVX512-BF16 or
    AMX), or None. ``cpuinfo``: the text of /proc/cpuinfo to judge instead of this machine's (tests). Without
    native units bf16 is emulated and slower than fp32 (BENCHMARKS.md "CPU bf16")."""
    if cpuinfo is None:
        import torch  # here: the config layer itself loads without torch

        if torch.cuda.is_available():
            return "the CUDA GPU supports bf16" if torch.cuda.is_bf16_supported() else None
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8")
        except OSError:  # not Linux: unknown, so not native
            return None
    flags = {word for line in cpuinfo.splitlines() if line.startswith("flags") for word in line.split()}
    found = [flag for flag in CPU_BF16_FLAGS if flag in flags]
    return f"the CPU has {' and '.join(found)}" if found else None


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether bf16 matmuls run natively here (see :func:`native_bf16_reason`)."""
    return native_bf16_reason(cpuinfo) is not None


_NO_NATIVE_BF16 = f"no native bf16 matmul (no CUDA GPU with bf16, no {' or '.join(CPU_BF16_FLAGS)} CPU flag)"
_auto_logged: set[str] = set()


def _pick_if_native_bf16(if_native: Any, otherwise: Any) -> Any:
    """``${native_bf16:A,B}`` (conf/hardware/auto.yaml): A where bf16 is native, else B. Resolved when a run reads
    its config, so on the machine that runs it (not where a sweep was launched); the choice is logged once."""
    reason = native_bf16_reason()
    picked = "cpu_bf16's settings (bf16 weights and autocast)" if reason else "cpu's settings (float32)"
    line = f"hardware=auto: {picked}, as {reason or _NO_NATIVE_BF16}"
    if line not in _auto_logged:
        _auto_logged.add(line)
        log.info(line)
    return if_native if reason else otherwise


if not OmegaConf.has_resolver("native_bf16"):  # registered on import, before any config that uses it is read
    OmegaConf.register_new_resolver("native_bf16", _pick_if_native_bf16)


DEVICES = ("auto", "cpu")  # hardware.device


@dataclass(frozen=True)
class HardwareSettings:
    name: str
    dtype: str
    bf16: bool
    load_in_4bit: bool
    gradient_checkpointing: bool
    optim: str
    micro_batch_size: int
    num_threads: int | None
    memory_gib: float | None  # device memory the planner checks against (rlhf/plan/); null = no check
    device: str  # auto: CUDA where there is a GPU, else the CPU; cpu: the CPU even on a GPU box (DEVICES)

    def __post_init__(self):
        check_choice("hardware.device", self.device, DEVICES)
        check_choice("hardware.dtype", self.dtype, ("float32", "bfloat16", "float16"))
        check(self.micro_batch_size >= 1, "hardware.micro_batch_size", self.micro_batch_size, "must be >= 1")
        if self.memory_gib is not None:
            check(self.memory_gib > 0, "hardware.memory_gib", self.memory_gib, "must be > 0 GiB, or null for no check")
        if self.num_threads is not None:
            check(self.num_threads >= 1, "hardware.num_threads", self.num_threads, "must be >= 1 or null")

    @property
    def cuda(self) -> bool:
        """Whether the run computes on a CUDA GPU: one is present and hardware.device is not cpu. Every placement
        decision (the models' device, the 4-bit loader's device map, the Trainer's use_cpu, the planner's terms)
        reads this, so hardware.device=cpu runs a GPU profile's own code path on the CPU."""
        if self.device == "cpu":
            return False
        import torch  # here: the config layer itself loads without torch

        return torch.cuda.is_available()

    def precision(self) -> dict:
        """What the run computes in and why, for summary.json: the option, the weights' dtype, the autocast dtype
        (None: off) and the reason (hardware=auto's detection on this machine, or the option as chosen)."""
        why = f"hardware={self.name} as configured" + (
            ", on the CPU (hardware.device=cpu)" if self.device == "cpu" else ""
        )
        if self.name == AUTO:
            why = f"hardware=auto: {native_bf16_reason() or _NO_NATIVE_BF16}"
        return {"hardware": self.name, "dtype": self.dtype, "autocast": "bfloat16" if self.bf16 else None, "why": why}

    def accumulation_steps(self, batch_size: int, key: str, processes: int = 1) -> tuple[int, int]:
        """Split a global effective ``batch_size`` into (micro batch, accumulation steps) per process for this
        hardware: micro batch x accumulation x ``processes`` = ``batch_size``."""
        if batch_size % processes:
            raise ConfigError(
                f"{key}={batch_size} is not divisible by the launch's {processes} processes: it is the global batch, "
                f"split evenly among them; choose a multiple of {processes}"
            )
        share = batch_size // processes
        micro = min(self.micro_batch_size, share)
        if share % micro:
            per = f" ({share} per process)" if processes > 1 else ""
            raise ConfigError(
                f"{key}={batch_size}{per} is not divisible by hardware.micro_batch_size={micro}: choose a multiple "
                f"of {micro * processes}, or set hardware.micro_batch_size to a divisor of {share}"
            )
        return micro, share // micro


# Folders of Anthropic/hh-rlhf on the hub; None loads them all.
HH_RLHF_SUBSETS = (None, "harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")


@dataclass(frozen=True)
class DatasetSettings:
    name: str
    seed: int
    n_train: int | None
    n_test: int | None
    family_weights: dict | None
    subset: str | None
    data_files: Any
    test_fraction: float | None
    max_train_rows: int | None
    max_eval_rows: int | None
    max_bad_fraction: float
    max_steps: dict[str, int]  # per-algorithm step budget the algo YAMLs read (${dataset.max_steps.<algo>})
    judge_protocol: bool  # rm, dpo, sft on the proxy half, algo=judge on the other (rlhf/data/halves.py)

    def __post_init__(self):
        check_choice("dataset.name", self.name, ("hh_synthetic", "hh_rlhf"))
        if self.name == "hh_synthetic":
            check(bool(self.n_train) and self.n_train >= 1, "dataset.n_train", self.n_train, "must be >= 1")
            check(bool(self.n_test) and self.n_test >= 1, "dataset.n_test", self.n_test, "must be >= 1")
        if self.name == "hh_rlhf" and self.data_files is None:
            check_choice("dataset.subset", self.subset, HH_RLHF_SUBSETS)
        if self.test_fraction is not None:
            check(0 < self.test_fraction < 1, "dataset.test_fraction", self.test_fraction, "must be in (0, 1)")
        check(0 <= self.max_bad_fraction <= 1, "dataset.max_bad_fraction", self.max_bad_fraction, "must be in [0, 1]")
        for key in ("max_train_rows", "max_eval_rows"):
            value = getattr(self, key)
            if value is not None:
                check(value >= 1, f"dataset.{key}", value, "must be >= 1 or null")
        if self.data_files is not None and not isinstance(self.data_files, (str, dict)):
            raise ConfigError(
                f"dataset.data_files={self.data_files!r}: give one file path or a mapping {{train: PATH, test: PATH}}"
            )


@dataclass(frozen=True)
class LoggerSettings:
    name: str
    project: str | None
    entity: str | None
    group: str | None
    mode: str | None
    init_timeout: float

    def __post_init__(self):
        check_choice("logger.name", self.name, ("wandb", "none"))
        if self.mode is not None:
            check_choice("logger.mode", self.mode, ("online", "offline", "disabled"))
        check(
            self.init_timeout > 0,
            "logger.init_timeout",
            self.init_timeout,
            "must be > 0 seconds (the wait for the W&B server)",
        )
