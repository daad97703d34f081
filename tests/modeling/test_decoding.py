"""Decoding (rlhf/modeling/generation.py decode): the inverse-CDF draw and the LM head's contiguous input."""

import pytest
import torch
from transformers import GenerationConfig

from rlhf.config import HardwareSettings, ModelSettings, from_node
from rlhf.modeling.generation import InverseCdfDraw, decode, sampling_processors
from rlhf.modeling.models import load_causal_lm, load_tokenizer, model_directory
from tests.conftest import compose_train

PROBS = torch.tensor([0.5, 0.2, 0.2, 0.1, 0.0])  # the last token cut (as by top-k / top-p): score -inf


def draws(n: int, probs: torch.Tensor = PROBS) -> torch.Tensor:
    """Tokens [n] drawn by InverseCdfDraw from ``probs`` (n rows at once, as n sequences of a batch)."""
    scores = torch.log(probs).expand(n, -1).clone()  # log 0 = -inf
    out = InverseCdfDraw()(None, scores)
    assert ((out == 0).sum(1) == 1).all() and ((out == 0) | (out == float("-inf"))).all()  # one token, argmax takes it
    return out.argmax(1)


def test_the_draw_follows_the_distribution_and_never_picks_a_cut_token():
    torch.manual_seed(0)
    counts = torch.bincount(draws(40_000), minlength=len(PROBS)).float() / 40_000
    assert counts[-1] == 0
    assert torch.allclose(counts, PROBS, atol=0.01), counts  # 0.01 is ~4 standard errors at 40k draws


def test_a_uniform_at_the_top_of_its_range_still_draws_a_possible_token(monkeypatch):
    # rand * total can round up to the total (the last cumulative value, shared by the cut tokens at the end)
    monkeypatch.setattr(torch, "rand_like", lambda t: torch.full_like(t, 1 - 2**-24))
    assert (draws(4, torch.tensor([0.3, 0.7, 0.0, 0.0])) == 1).all()
    monkeypatch.setattr(torch, "rand_like", torch.zeros_like)
    assert (draws(4, torch.tensor([0.0, 0.4, 0.6])) == 1).all()  # u = 0: the first token with mass


def test_the_warpers_are_transformers_own_for_the_sampling_knobs():
    config = GenerationConfig(do_sample=True, temperature=0.7, top_k=2, top_p=1.0)
    names = [type(p).__name__ for p in sampling_processors(config)]
    assert names == ["TemperatureLogitsWarper", "TopKLogitsWarper", "InverseCdfDraw"]
    torch.manual_seed(0)
    logits = torch.randn(256, 50)
    drawn = sampling_processors(config)(None, logits.clone()).argmax(1)
    assert (logits.gather(1, drawn[:, None]) >= logits.topk(2).values[:, 1:]).all()  # only the top 2 are drawn


@pytest.fixture(scope="module")
def tiny():
    # fp32 on every CPU (the default, hardware=auto, is bf16 where the CPU has it)
    cfg = compose_train(["model=tiny_llama", "hardware=cpu"])
    model = from_node(ModelSettings, cfg.model, "model")
    path = model_directory(model)
    tokenizer = load_tokenizer(path, model)
    return tokenizer, load_causal_lm(path, model, from_node(HardwareSettings, cfg.hardware, "hardware"), tokenizer)


def prompts(tokenizer):
    ids = torch.randint(100, 1000, (3, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    ids[0, :3] = tokenizer.pad_token_id
    return ids, mask


def test_sampled_decoding_is_reproducible_from_the_seed(tiny):
    tokenizer, lm = tiny
    ids, mask = prompts(tokenizer)
    config = GenerationConfig(do_sample=True, temperature=0.7, max_new_tokens=12, eos_token_id=None,
                              pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(decode(lm, ids, mask, config))
    assert runs[0].shape == (3, 7 + 12) and torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert config.do_sample and config.temperature == 0.7  # the caller's config is left as it was


def test_greedy_decoding_is_transformers_own(tiny):
    tokenizer, lm = tiny
    ids, mask = prompts(tokenizer)
    config = GenerationConfig(do_sample=False, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id)
    expected = lm.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    assert torch.equal(decode(lm, ids, mask, config), expected)


def test_the_lm_head_reads_a_contiguous_input(tiny):
    # generate's prefill hands the head a strided slice (the last position); torch's CPU linear is many times
    # slower on one (rlhf/modeling/models.py contiguous_head_input)
    tokenizer, lm = tiny
    seen = []
    hook = lm.get_output_embeddings().register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        ids, mask = prompts(tokenizer)
        decode(lm, ids, mask, GenerationConfig(do_sample=False, max_new_tokens=2, pad_token_id=tokenizer.pad_token_id))
    finally:
        hook.remove()
    assert len(seen) == 2 and all(x.is_contiguous() for x in seen)
    hidden = torch.randn(3, 7, lm.config.hidden_size)
    assert torch.allclose(lm.get_output_embeddings()(hidden[:, -1:]), lm.lm_head(hidden[:, -1:].contiguous()))
