"""evaluate.py's ordering and batching (rlhf/evaluation/batching.py): shortest prompts first, log-prob batches
without all-padding columns, and the policy's log-probs taken from the decoding equal to a forward pass."""

import pytest
import torch

from rlhf.config import DatasetSettings, from_node
from rlhf.data.preference import load_preference_splits
from rlhf.evaluation.batching import rows_of, shortest_first
from rlhf.evaluation.policies import PolicyBank
from rlhf.modeling.generation import Rollout, Sampling, response_logprobs, sample
from rlhf.modeling.logprobs import generation_prompt_ids
from rlhf.modeling.models import load_causal_lm
from tests.evaluation.helpers import _tiny, save_policy_adapter, tiny_evaluate


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    cfg = tiny_evaluate(tmp_path_factory.mktemp("outputs"))
    return [ex["prompt"] for ex in load_preference_splits(from_node(DatasetSettings, cfg.dataset, "dataset")).test]


def test_shortest_first_orders_by_encoded_length(prompts):
    _, _, _, tokenizer = _tiny()
    lengths = [len(generation_prompt_ids(tokenizer, p)) for p in prompts]
    order = shortest_first(tokenizer, prompts)
    assert sorted(order.tolist()) == list(range(len(prompts)))
    assert [lengths[i] for i in order] == sorted(lengths) and len(set(lengths)) > 1


def test_rows_of_drops_the_response_columns_padded_in_every_row():
    # three responses of 1, 3 and 2 real tokens, padded to 4 columns
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    rollout = Rollout(
        prompts=[[{"role": "user", "content": str(i)}] for i in range(3)],
        prompt_ids=torch.arange(6).view(3, 2),
        prompt_mask=torch.ones(3, 2, dtype=torch.long),
        responses=torch.arange(12).view(3, 4),
        mask=mask,
        has_eos=torch.tensor([True, False, True]),
        texts=["a", "b", "c"],
        logprobs=-torch.arange(12, dtype=torch.float).view(3, 4),
    )
    batch = rows_of(rollout, torch.tensor([2, 0]))  # longest real response: 2 tokens
    assert batch.responses.tolist() == [[8, 9], [0, 1]] and batch.mask.tolist() == [[True, True], [True, False]]
    assert batch.logprobs.tolist() == [[-8.0, -9.0], [-0.0, -1.0]] and batch.texts == ["c", "a"]
    assert batch.prompt_ids.tolist() == [[4, 5], [0, 1]] and batch.has_eos.tolist() == [True, True]
    assert rows_of(rollout, torch.tensor([1, 0])).responses.shape == (2, 3)


@pytest.mark.parametrize("greedy", [False, True])
def test_decoding_logits_give_the_log_probs_of_a_forward_pass(tmp_path, prompts, greedy):
    model, hardware, path, tokenizer = _tiny()
    bank = PolicyBank(load_causal_lm(path, model, hardware, tokenizer), tokenizer)
    policy = bank.attach(save_policy_adapter(tmp_path / "adapter", random_b=True, seed=2))
    view = bank.view(policy, None)
    sampling = Sampling(max_prompt_length=64, max_new_tokens=6, temperature=0.7, top_k=0, top_p=1.0)
    torch.manual_seed(0)
    rollout = sample(view, prompts[:5], sampling, greedy=greedy, chunk_size=3, with_logprobs=True)
    temperature = sampling.logprob_temperature(greedy)
    forward, _ = response_logprobs(view, "policy", rollout, torch.arange(5), temperature)
    assert rollout.logprobs.shape == forward.shape
    assert torch.allclose(rollout.logprobs[rollout.mask], forward[rollout.mask], atol=1e-4)
    reference, _ = response_logprobs(view, "reference", rollout, torch.arange(5), temperature)
    assert (forward - reference)[rollout.mask].abs().max() > 1e-2  # the adapter moved the policy
