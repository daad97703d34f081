"""Hand-computed checks of the per-token math shared by PPO and evaluation (rlhf/modeling/token_math.py).

Each expected number is worked out in a comment or by an explicit, independent Python loop.
"""

import math

import pytest
import torch

from rlhf.modeling import token_math as tm
from tests.hand_math import close, t

# --------------------------------------------------------------------------- log-probs


def test_gather_logprobs_hand_values_and_temperature():
    ln3 = math.log(3.0)
    logits = t([[[0.0, ln3], [ln3, 0.0]]])  # [B=1, T=2, V=2]
    tokens = torch.tensor([[1, 1]])
    # softmax([0, ln3]) = [1/4, 3/4]; softmax([ln3, 0]) = [3/4, 1/4]
    close(tm.gather_logprobs(logits, tokens), [[math.log(0.75), math.log(0.25)]])
    # temperature 2: logits/2 = [0, ln sqrt3] -> p1 = sqrt3 / (1 + sqrt3)
    r3 = math.sqrt(3.0)
    expected = [[math.log(r3 / (1 + r3)), math.log(1 / (1 + r3))]]
    close(tm.gather_logprobs(logits, tokens, temperature=2.0), expected)


def test_gather_logprobs_matches_manual_softmax_on_random_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    tokens = torch.randint(0, 5, (2, 3), generator=g)
    out = tm.gather_logprobs(logits, tokens, temperature=0.7)
    for b, i in [(0, 0), (1, 2)]:
        row = [x / 0.7 for x in logits[b, i].tolist()]
        log_z = math.log(sum(math.exp(x) for x in row))
        close(out[b, i], row[tokens[b, i]] - log_z)


def test_gather_logprobs_low_precision_is_upcast_per_row():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 7, generator=g)
    tokens = torch.randint(0, 7, (2, 4), generator=g)
    out = tm.gather_logprobs(logits.bfloat16(), tokens, temperature=0.9)
    assert out.dtype == torch.float32
    ref = tm.gather_logprobs(logits.bfloat16().float(), tokens, temperature=0.9)
    torch.testing.assert_close(out, ref)


def test_gather_logprobs_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        tm.gather_logprobs(torch.zeros(1, 1, 2), torch.zeros(1, 1, dtype=torch.long), temperature=0.0)


def test_response_logprobs_left_padding_index_arithmetic():
    # A "bigram model": the logits at position i depend only on the token at i, so the
    # correct log-prob of response token j is log_softmax(W[token j-1])[token j], whatever
    # the amount of left padding. An off-by-one would pick a different row of W.
    V, pad = 10, 0
    W = torch.randn(V, V, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    response = [3, 4, 9]
    expected = [
        torch.log_softmax(W[8], -1)[3].item(),  # last prompt token 8 predicts 3
        torch.log_softmax(W[3], -1)[4].item(),
        torch.log_softmax(W[4], -1)[9].item(),
    ]
    for prompts in ([[pad, 7, 8], [6, 7, 8]], [[pad, pad, pad, 7, 8], [pad, pad, 6, 7, 8]]):
        input_ids = torch.tensor([p + response for p in prompts])
        logits = W[input_ids]  # [B, P+T, V]
        P = len(prompts[0])
        out = tm.gather_logprobs(
            tm.response_positions(logits, P), input_ids[:, P:]
        )  # as Roles.response_head and PolicyView do
        assert out.shape == (2, 3)
        close(out, [expected, expected])


def test_response_logprobs_rejects_bad_prompt_len():
    with pytest.raises(ValueError, match="prompt_len"):
        tm.response_positions(torch.zeros(1, 4, 3), prompt_len=4)
    with pytest.raises(ValueError, match="prompt_len"):
        tm.response_positions(torch.zeros(1, 4, 3), prompt_len=0)


def test_entropy_from_logits():
    ln3 = math.log(3.0)
    logits = t([[[0.0, 0.0, 0.0, 0.0], [0.0, ln3, -math.inf, -math.inf]]])
    # uniform over 4 -> ln 4; [1/4, 3/4, 0, 0] -> -(1/4 ln 1/4 + 3/4 ln 3/4)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    close(tm.entropy_from_logits(logits), [[math.log(4.0), h]])  # -inf logits contribute 0, not nan
    close(tm.entropy_from_logits(logits.float()), [[math.log(4.0), h]], tol=1e-6)


def test_position_ids_count_real_tokens_only():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert tm.position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
