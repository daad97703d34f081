"""Model sources, tokenizer pad handling, LoRA placement and load errors (tiny models only)."""

import pytest
import torch

from rlhf.config import HardwareSettings, LoraSettings, ModelSettings, from_node
from rlhf.errors import ConfigError, ModelLoadError
from rlhf.modeling.models import (
    add_adapter,
    load_adapter,
    load_causal_lm,
    load_reward_backbone,
    load_tokenizer,
    model_directory,
)
from tests.conftest import compose_train


def settings(*overrides):
    cfg = compose_train(["model=tiny_llama", *overrides])
    return (
        from_node(ModelSettings, cfg.model, "model"),
        from_node(HardwareSettings, cfg.hardware, "hardware"),
        from_node(LoraSettings, cfg.lora, "lora"),
    )


def test_tiny_model_is_built_once_and_identical_on_reload():
    model, hardware, _ = settings()
    path = model_directory(model)
    assert model_directory(model) == path  # cached, not rebuilt
    tokenizer = load_tokenizer(path, model)
    first = load_causal_lm(path, model, hardware, tokenizer)
    second = load_causal_lm(path, model, hardware, tokenizer)
    for (name, a), (_, b) in zip(first.named_parameters(), second.named_parameters()):
        assert torch.equal(a, b), name
    assert first.config.num_hidden_layers == 2 and first.config.hidden_size == 64


def test_pad_token_is_distinct_from_eos():
    model, _, _ = settings()
    tokenizer = load_tokenizer(model_directory(model), model)
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_pad_equal_to_eos_is_refused():
    model, _, _ = settings("model.pad_token='<|im_end|>'")
    with pytest.raises(ConfigError, match="equals EOS"):
        load_tokenizer(model_directory(model), model)


def test_hh_chat_template_renders_transcripts_with_eos():
    model, _, _ = settings("model.chat_template=hh")
    tokenizer = load_tokenizer(model_directory(model), model)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}], tokenize=False
    )
    # BOS once, written by the template (apply_chat_template adds no special tokens of its own)
    assert text == tokenizer.bos_token + "\n\nHuman: Hi\n\nAssistant: Hello." + tokenizer.eos_token


def test_lora_wraps_only_attention_projections_and_trains_the_score_head():
    model, hardware, lora = settings()
    path = model_directory(model)
    tokenizer = load_tokenizer(path, model)
    reward = add_adapter(load_reward_backbone(path, model, hardware, tokenizer), lora, "SEQ_CLS", ["score"])
    trainable = [name for name, p in reward.named_parameters() if p.requires_grad]
    assert trainable and all(
        ("lora_" in n and any(t in n for t in lora.target_modules)) or "score" in n for n in trainable
    )
    assert any("score" in n for n in trainable)


def test_full_finetuning_returns_the_backbone():
    model, hardware, _ = settings()
    _, _, no_lora = settings("lora=none")
    path = model_directory(model)
    backbone = load_causal_lm(path, model, hardware, load_tokenizer(path, model))
    assert add_adapter(backbone, no_lora, "CAUSAL_LM") is backbone


def test_missing_local_model_says_how_to_point_at_a_copy(tmp_path):
    model, _, _ = settings(f"model.name_or_path={tmp_path}/no-such-model")
    with pytest.raises(ModelLoadError, match=r"set model\.name_or_path=DIR"):
        load_tokenizer(model.name_or_path, model)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_4bit_without_a_gpu_is_a_config_error():
    model, _, _ = settings()
    _, hardware, _ = settings("hardware=gpu_24gb")
    path = model_directory(model)
    # the error names the switch that runs the profile's 4-bit path on the CPU (tests/test_qlora_cpu.py)
    with pytest.raises(
        ConfigError, match=r"hardware=gpu_24gb .* no CUDA GPU was found: use hardware=cpu, or hardware.device=cpu"
    ):
        load_causal_lm(path, model, hardware, load_tokenizer(path, model))


def bf16_reward_model():
    """The tiny reward backbone loaded as hardware.dtype=bfloat16 (no autocast), with LoRA and a trainable score."""
    model, hardware, lora = settings("hardware.dtype=bfloat16")
    path = model_directory(model)
    tokenizer = load_tokenizer(path, model)
    reward = add_adapter(load_reward_backbone(path, model, hardware, tokenizer), lora, "SEQ_CLS", ["score"])
    return tokenizer, reward


def test_lora_and_score_head_train_in_float32_on_a_bf16_base():
    tokenizer, reward = bf16_reward_model()
    params = dict(reward.named_parameters())
    trainable = {n: p for n, p in params.items() if p.requires_grad}
    assert params["base_model.model.model.embed_tokens.weight"].dtype == torch.bfloat16  # the base stays bf16
    assert any("lora_B" in n for n in trainable) and any(".score.modules_to_save." in n for n in trainable)
    assert all(p.dtype == torch.float32 for p in trainable.values()), {n: p.dtype for n, p in trainable.items()}

    batch = tokenizer(["Hello there.", "A longer text to score here."], padding=True, return_tensors="pt")
    rewards = reward(**batch).logits[:, 0]  # bf16 hidden state into the float32 head: no dtype error
    assert rewards.dtype == torch.float32 and torch.isfinite(rewards).all()
    head = next(p for n, p in trainable.items() if ".score.modules_to_save." in n)
    before = head.detach().clone()
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-5, eps=1e-5, weight_decay=0.0)
    (rewards[0] - rewards[1]).backward()
    optimizer.step()
    assert not torch.equal(head, before)  # a 1e-5 step moves a float32 weight...
    stored_in_bf16 = (before - 1e-5 * torch.sign(head.grad)).to(torch.bfloat16).float()
    assert (stored_in_bf16 == before).float().mean() > 0.5  # ...where bf16 would keep most weights as they were


def test_a_saved_float32_head_loads_exactly_onto_a_bf16_base(tmp_path):
    _, reward = bf16_reward_model()
    with torch.no_grad():
        head = reward.base_model.model.score.modules_to_save["default"].weight
        head.add_(1e-4 * torch.arange(head.numel()).reshape(head.shape))  # digits bf16 cannot hold
    reward.save_pretrained(tmp_path / "adapter")
    model, hardware, _ = settings("hardware.dtype=bfloat16")
    path = model_directory(model)
    loaded = load_adapter(
        load_reward_backbone(path, model, hardware, load_tokenizer(path, model)), tmp_path / "adapter"
    )
    copy = loaded.base_model.model.score.modules_to_save["default"].weight
    assert copy.dtype == torch.float32 and torch.equal(copy, head)
