"""Hand-computed checks of the PPO tensor math (rlhf/algos/ppo/math.py).

Each expected number is worked out in a comment or by an explicit, independent Python loop.
"""

import json
import math
import statistics

import pytest
import torch

from rlhf.algos.ppo import math as pm
from rlhf.modeling import token_math as tm
from tests.hand_math import close, t

# --------------------------------------------------------------------------- masked stats

# Selected values are 1, 3, 5: mean 3, squared deviations 4, 0, 4.
VALUES = t([[1.0, 3.0, 100.0], [5.0, -7.0, 9.0]])
MASK = torch.tensor([[True, True, False], [True, False, False]])


def test_masked_mean():
    close(pm.masked_mean(VALUES, MASK), 3.0)
    close(pm.masked_mean(VALUES, MASK, dim=1), [2.0, 5.0])  # (1+3)/2, 5/1
    close(pm.masked_mean(VALUES, MASK.double()), 3.0)  # float masks work too


def test_masked_var():
    close(pm.masked_var(VALUES, MASK, unbiased=False), 8.0 / 3.0)  # 8 / n
    close(pm.masked_var(VALUES, MASK), 4.0)  # 8 / (n - 1)


def test_masked_whiten():
    s = math.sqrt(4.0 + 1e-8)
    # (v - 3) / 2 on real tokens, 0 on padding
    close(pm.masked_whiten(VALUES, MASK), [[-2 / s, 0.0, 0.0], [2 / s, 0.0, 0.0]])
    # shift_mean=False adds the mean back: only the scale changes
    close(pm.masked_whiten(VALUES, MASK, shift_mean=False), [[3 - 2 / s, 3.0, 0.0], [3 + 2 / s, 0.0, 0.0]])


def test_masked_stats_reject_empty_masks():
    empty = torch.zeros_like(MASK)
    with pytest.raises(ValueError, match="no elements"):
        pm.masked_mean(VALUES, empty)
    one = torch.tensor([[True, False, False], [False, False, False]])
    with pytest.raises(ValueError, match="unbiased"):
        pm.masked_var(VALUES, one)
    close(pm.masked_var(VALUES, one, unbiased=False), 0.0)
    with pytest.raises(ValueError, match="shape"):
        pm.masked_mean(VALUES, MASK[:, :2])


# --------------------------------------------------------------------------- KL and rewards


def test_kl_estimators_hand_values():
    lp, ref = t([[-1.0, -2.0, -0.5]]), t([[-2.0, -1.0, -0.5]])
    # d = lp - ref = [1, -1, 0]
    close(pm.kl_penalty(lp, ref, "k1"), [[1.0, -1.0, 0.0]])
    # k3 = (r - 1) - log r, r = exp(-d): d=1 -> e^-1 - 1 + 1 = e^-1; d=-1 -> e - 1 - 1 = e - 2
    close(pm.kl_penalty(lp, ref, "k3"), [[math.exp(-1.0), math.e - 2.0, 0.0]])
    close(pm.kl_penalty(lp, ref, "abs"), [[1.0, 1.0, 0.0]])
    close(pm.kl_penalty(lp, ref, "mse"), [[0.5, 0.5, 0.0]])


def test_unknown_kl_estimator_names_valid_ones():
    with pytest.raises(ValueError, match=r"'k2'.*k1, k3, abs, mse"):
        pm.kl_penalty(t([[0.0]]), t([[0.0]]), "k2")


def test_per_token_rewards_score_on_last_real_token():
    lp = t([[-1.0, -2.0, -3.0], [-0.5, -1.0, -9.0]])
    ref = t([[-1.5, -1.0, -3.0], [-1.0, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    scores = t([2.0, -1.0])
    rewards, kl = pm.per_token_rewards(scores, lp, ref, mask, kl_coef=0.1)
    # k1 on real tokens: row0 [0.5, -1, 0], row1 [0.5, pad, pad]
    close(kl, [[0.5, -1.0, 0.0], [0.5, 0.0, 0.0]])
    # -0.1 * kl, plus the score at index mask.sum - 1 (2 for row0, 0 for row1)
    close(rewards, [[-0.05, 0.1, 2.0], [-0.05 - 1.0, 0.0, 0.0]])


def test_per_token_rewards_k3_and_empty_row():
    lp, ref = t([[-1.0, 0.0]]), t([[-2.0, 0.0]])
    rewards, kl = pm.per_token_rewards(t([1.0]), lp, ref, torch.tensor([[1, 0]]), kl_coef=0.5, estimator="k3")
    close(kl, [[math.exp(-1.0), 0.0]])
    close(rewards, [[1.0 - 0.5 * math.exp(-1.0), 0.0]])
    with pytest.raises(ValueError, match=r"rows \[0\]"):
        pm.per_token_rewards(t([1.0]), lp, ref, torch.tensor([[0, 0]]), kl_coef=0.5)


def test_response_mask_after_eos_and_sequence_lengths():
    eos, pad = 2, 0
    responses = torch.tensor(
        [
            [5, 2, 0, 0],  # EOS at 1, then padding
            [5, 6, 7, 8],  # no EOS: truncated, all real
            [2, 9, 2, 9],  # first EOS wins
            [5, 6, 0, 0],  # no EOS, stopped otherwise and padded: ends before the pad
        ]
    )
    mask = tm.response_mask_after_eos(responses, eos, pad)
    assert mask.dtype == torch.bool
    assert mask.int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]
    assert pm.sequence_lengths(mask).tolist() == [1, 3, 0, 1]
    assert tm.contains_eos(responses, eos).tolist() == [True, False, True, False]
    # pad == eos (common for chat tokenizers): the first one is the real EOS
    same = tm.response_mask_after_eos(torch.tensor([[5, 2, 2, 2]]), eos_token_id=2, pad_token_id=2)
    assert same.int().tolist() == [[1, 1, 0, 0]]
    assert tm.truncate_after_eos(torch.tensor([[5, 2, 7, 7]]), eos, pad).tolist() == [[5, 2, 0, 0]]


def test_missing_eos_penalty_subtracts():
    scores = t([1.0, 2.0, 3.0])
    has_eos = torch.tensor([True, False, True])
    close(pm.apply_missing_eos_penalty(scores, has_eos, 1.5), [1.0, 0.5, 3.0])
    close(pm.apply_missing_eos_penalty(scores, has_eos, None), [1.0, 2.0, 3.0])
    close(scores, [1.0, 2.0, 3.0])  # not modified in place
    with pytest.raises(ValueError, match="-1.0"):
        pm.apply_missing_eos_penalty(scores, has_eos, -1.0)


def test_normalize_scores():
    scores = t([-5.0, 0.0, 1.0, 6.0])
    close(pm.normalize_scores(scores, clip_value=2.0), [-2.0, 0.0, 1.0, 2.0])
    clipped = [-2.0, 0.0, 1.0, 2.0]
    mu, sd = statistics.mean(clipped), math.sqrt(statistics.variance(clipped) + 1e-8)
    close(pm.normalize_scores(scores, clip_value=2.0, whiten=True), [(x - mu) / sd for x in clipped])
    close(pm.normalize_scores(scores), scores)


# --------------------------------------------------------------------------- GAE


def test_gae_by_hand_gamma1_lam1_is_future_reward_sum_minus_value():
    rewards, values = t([[1.0, 2.0, 3.0]]), t([[0.5, 1.0, 1.5]])
    adv, ret = pm.compute_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    # A_t = sum_{k>=t} r_k - V_t = [6 - 0.5, 5 - 1, 3 - 1.5]
    close(adv, [[5.5, 4.0, 1.5]])
    close(ret, [[6.0, 5.0, 3.0]])


def test_gae_by_hand_with_padding():
    # gamma = lam = 0.5, last token is padding (its reward/value must be ignored):
    # delta_1 = 4 + 0 - 2 = 2 -> A_1 = 2
    # delta_0 = 1 + 0.5 * 2 - 2 = 0 -> A_0 = 0 + 0.25 * 2 = 0.5
    rewards, values = t([[1.0, 4.0, 9.0]]), t([[2.0, 2.0, 7.0]])
    adv, ret = pm.compute_gae(rewards, values, torch.tensor([[1, 1, 0]]), gamma=0.5, lam=0.5)
    close(adv, [[0.5, 2.0, 0.0]])
    close(ret, [[2.5, 4.0, 0.0]])


def test_gae_matches_python_loop_on_ragged_batch():
    g = torch.Generator().manual_seed(3)
    B, T, gamma, lam = 5, 7, 0.9, 0.8
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = [7, 1, 4, 6, 3]
    mask = torch.tensor([[1 if i < n else 0 for i in range(T)] for n in lengths])
    adv, ret = pm.compute_gae(rewards, values, mask, gamma=gamma, lam=lam)

    for b, n in enumerate(lengths):
        r, v = rewards[b].tolist(), values[b].tolist()
        expected, gae = [0.0] * T, 0.0
        for i in reversed(range(n)):
            next_v = v[i + 1] if i + 1 < n else 0.0
            gae = r[i] + gamma * next_v - v[i] + gamma * lam * gae
            expected[i] = gae
        close(adv[b], expected)
        close(ret[b], [expected[i] + v[i] if i < n else 0.0 for i in range(T)])


def test_reward_normalisation_is_a_no_op_when_the_critic_starts_from_the_reward_model():
    """N+ shifts the reward model by a constant c (its bias) so the reference's mean score is 0, and
    initialises the critic from that shifted model. Both shifts together leave every advantage as it was
    for gamma = 1 (each delta_t gains -c from V_{t+1} and +c from -V_t; the last one -c from the score):
    issue 18's normalisation lever has nothing to move in this PPO, whose critic starts from the reward
    model (ppo.yaml, value_model). Shifting the score alone would change them."""
    g = torch.Generator().manual_seed(7)
    B, T, c = 4, 6, 0.58  # c: about the reference's mean rm score at the start of the default run
    lengths = [6, 2, 4, 5]
    mask = torch.tensor([[1 if i < n else 0 for i in range(T)] for n in lengths])
    real = mask.double()
    scores = torch.randn(B, generator=g, dtype=torch.float64)
    logprobs, ref = (torch.randn(B, T, generator=g, dtype=torch.float64) for _ in range(2))
    values = torch.randn(B, T, generator=g, dtype=torch.float64)

    def advantages(shift: float, shift_values: bool, gamma: float = 1.0):
        rewards, _ = pm.per_token_rewards(scores - shift, logprobs, ref, mask, kl_coef=0.05)
        return pm.compute_gae(rewards, values - shift * shift_values, mask, gamma=gamma, lam=0.95)

    adv, ret = advantages(0.0, False)
    adv_norm, ret_norm = advantages(c, True)
    close(adv_norm, adv)
    close(ret_norm, (ret - c) * real)  # the critic's targets move with it
    assert not torch.allclose(advantages(c, False)[0], adv)  # the score alone: a critic off by c
    assert not torch.allclose(advantages(c, True, gamma=0.9)[0], advantages(0.0, False, gamma=0.9)[0])


def test_gae_rejects_non_prefix_mask():
    with pytest.raises(ValueError, match="prefix"):
        pm.compute_gae(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([[1, 0, 1]]))


# --------------------------------------------------------------------------- losses


def test_policy_loss_clipping_both_signs():
    # eps = 0.2; per token: -A*ratio vs -A*clip(ratio), take the max
    #   A=+1 r=1.1 (inside)        -> -1.1 vs -1.1 -> -1.1
    #   A=+1 r=1.5 (above)         -> -1.5 vs -1.2 -> -1.2  clipped
    #   A=-2 r=0.5 (below)         ->  1.0 vs  1.6 ->  1.6  clipped
    #   A=-2 r=1.5 (above, A<0)    ->  3.0 vs  2.4 ->  3.0  (pessimistic: not clipped)
    #   A=+1 r=0.5 (below, A>0)    -> -0.5 vs -0.8 -> -0.5
    #   padding with ratio 10      -> ignored
    ratios = [1.1, 1.5, 0.5, 1.5, 0.5, 10.0]
    new = t([[math.log(r) for r in ratios]]).requires_grad_()
    old = torch.zeros(1, 6, dtype=torch.float64)
    adv = t([[1.0, 1.0, -2.0, -2.0, 1.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    loss, stats = pm.policy_loss(new, old, adv, mask, clip_range=0.2)
    close(loss, (-1.1 - 1.2 + 1.6 + 3.0 - 0.5) / 5)  # 0.36
    close(stats["clipfrac"], 2 / 5)
    logs = [math.log(r) for r in ratios[:5]]
    close(stats["approxkl"], 0.5 * sum(x * x for x in logs) / 5)
    close(stats["ratio_mean"], sum(ratios[:5]) / 5)
    close(stats["ratio_max"], 1.5)
    assert not any(v.requires_grad for v in stats.values())
    # Gradient: d(-A*ratio)/d(logprob) = -A*ratio / n on the unclipped branch, 0 when clipped.
    loss.backward()
    close(new.grad, [[-1.1 / 5, 0.0, 0.0, 2 * 1.5 / 5, -0.5 / 5, 0.0]])


def test_value_loss_clipping_both_branches():
    # eps = 0.2, old = 0, R = 1
    #   new=0.1  -> v_clip 0.1 : 0.81 vs 0.81 -> 0.81
    #   new=1.0  -> v_clip 0.2 : 0.00 vs 0.64 -> 0.64  clipped
    #   new=-1.0 -> v_clip -0.2: 4.00 vs 1.44 -> 4.00
    #   padding                -> ignored
    new = t([[0.1, 1.0, -1.0, 50.0]])
    old = torch.zeros(1, 4, dtype=torch.float64)
    ret = t([[1.0, 1.0, 1.0, -50.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss, stats = pm.value_loss(new, old, ret, mask, clip_range=0.2)
    close(loss, 0.5 * (0.81 + 0.64 + 4.0) / 3)
    close(stats["clipfrac"], 1 / 3)


# --------------------------------------------------------------------------- KL controllers


def test_adaptive_kl_controller_hand_values():
    ctl = pm.AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10000)
    expected = 0.1
    for kl, err in [
        (6.6, 0.1),  # 6.6/6 - 1 = +0.1 (over target: coefficient grows)
        (12.0, 0.2),  # +1.0 clipped to +0.2
        (5.4, -0.1),  # under target: coefficient shrinks
        (0.0, -0.2),  # -1.0 clipped to -0.2
    ]:
        ctl.update(kl, n_steps=256)
        expected *= 1 + err * 256 / 10000
        close(ctl.value, expected, tol=1e-12)
    close(expected, 0.1 * 1.00256 * 1.00512 * 0.99744 * 0.99488, tol=1e-15)
    ctl.update(torch.tensor(6.0), n_steps=256)  # on target: no change, tensors accepted
    close(ctl.value, expected, tol=1e-12)


def test_kl_controller_state_dict_round_trip():
    ctl = pm.make_kl_controller(0.05, adaptive=True, target=6.0, horizon=10000)
    assert isinstance(ctl, pm.AdaptiveKLController)
    ctl.update(9.0, n_steps=64)
    state = json.loads(json.dumps(ctl.state_dict()))  # survives a JSON checkpoint
    resumed = pm.make_kl_controller(0.05, adaptive=True, target=6.0, horizon=10000)
    resumed.load_state_dict(state)
    assert resumed.value == ctl.value != 0.05

    fixed = pm.make_kl_controller(0.2, adaptive=False)
    assert isinstance(fixed, pm.FixedKLController)
    fixed.update(100.0, n_steps=64)
    assert fixed.value == 0.2
    other = pm.FixedKLController(0.0)
    other.load_state_dict(fixed.state_dict())
    assert other.value == 0.2


def test_make_kl_controller_validation():
    with pytest.raises(ValueError, match="target"):
        pm.make_kl_controller(0.1, adaptive=True, horizon=100)
    with pytest.raises(ValueError, match="-1"):
        pm.AdaptiveKLController(0.1, target=-1, horizon=100)
    with pytest.raises(ValueError, match="kl_coef"):
        pm.FixedKLController(-0.1)
