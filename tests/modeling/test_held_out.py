"""The held-out evaluation every online arm runs (PPO, GRPO, RLOO): metrics are the summary of the per-prompt
records and of nothing else; seeded draws that leave the training RNG alone; chunks change nothing."""

from __future__ import annotations

import math
from contextlib import nullcontext

import pytest
import torch

from rlhf.config import HardwareSettings, ModelSettings, from_node
from rlhf.data.hh_rlhf import to_preference_example
from rlhf.data.synthetic import generate
from rlhf.modeling.generation import Sampling
from rlhf.modeling.held_out import evaluate, last_user_text, summarize
from rlhf.modeling.models import load_causal_lm, load_tokenizer, model_directory
from rlhf.modeling.token_math import position_ids
from tests.conftest import compose_train, tiny_overrides


def record(rm, kl, length, has_eos, gold=None) -> dict:
    return {"prompt": "p", "response": "r", "rm_score": rm, "gold_score": gold, "kl": kl, "length": length,
            "has_eos": has_eos}  # fmt: skip


# --------------------------------------------------------------------------- summarize, by hand


def test_summarize_is_the_mean_of_each_record_field():
    records = [
        record(1.0, 0.5, 4, True, gold=1.0),
        record(-2.0, 1.5, 6, False, gold=0.0),
        record(4.0, 1.0, 5, True, 0.5),
    ]
    assert summarize(records) == {
        "rm_score": pytest.approx(1.0),  # (1 - 2 + 4) / 3
        "kl": pytest.approx(1.0),  # (0.5 + 1.5 + 1) / 3
        "length": pytest.approx(5.0),
        "eos_rate": pytest.approx(2 / 3),
        "gold_score": pytest.approx(0.5),
    }


def test_summarize_leaves_gold_out_without_a_gold_judge():
    metrics = summarize([record(1.0, 0.0, 3, True), record(3.0, 0.0, 5, True)])
    assert metrics == {"rm_score": 2.0, "kl": 0.0, "length": 4.0, "eos_rate": 1.0}


def test_summarize_of_records_gathered_in_any_order_is_the_same():
    # what a multi-process run relies on: ranks' records concatenated in any order give the same metrics
    torch.manual_seed(0)
    records = [record(*torch.randn(2).tolist(), int(n), bool(n % 2), gold=float(g)) for n, g in
               zip(torch.randint(1, 48, (97,)), torch.rand(97))]  # fmt: skip
    shuffled = [records[i] for i in torch.randperm(len(records)).tolist()]
    assert summarize(shuffled) == summarize(records)  # exact: fsum does not depend on the order
    halves = summarize(records[:40]), summarize(records[40:])
    assert summarize(records)["rm_score"] == pytest.approx(
        (40 * halves[0]["rm_score"] + 57 * halves[1]["rm_score"]) / 97
    )


def test_summarize_needs_a_record():
    with pytest.raises(ValueError, match="at least one record"):
        summarize([])


def test_last_user_text_is_the_last_user_turn():
    prompt = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert last_user_text(prompt) == "c" and last_user_text([]) == ""


# --------------------------------------------------------------------------- evaluate on the tiny model


class TinySide:
    """The model side evaluate reads (as PPO's Roles and the online arms' PolicyView): a LoRA policy on the tiny
    base (random B, so it differs from its reference), the reference the base with the adapter off, and a
    made-up reward (characters of the response / 10) that records its batch sizes."""

    def __init__(self, same_as_reference: bool = False):
        from peft import LoraConfig, get_peft_model

        cfg = compose_train(tiny_overrides())
        model = from_node(ModelSettings, cfg.model, "model")
        path = model_directory(model)
        self.tokenizer = load_tokenizer(path, model)
        lm = load_causal_lm(path, model, from_node(HardwareSettings, cfg.hardware, "hardware"), self.tokenizer)
        torch.manual_seed(0)
        targets = ["q_proj", "v_proj"]
        self.model = get_peft_model(lm, LoraConfig(r=4, lora_alpha=8, target_modules=targets, task_type="CAUSAL_LM"))
        if not same_as_reference:
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    if "lora_B" in name:
                        p.normal_(0, 0.5)
        self.model.eval()
        self.reward_batches, self.forward_rows = [], []

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, input_ids, attention_mask, config, with_logits=False, with_values=False):
        return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)

    def response_head(self, role, input_ids, attention_mask, prompt_len):
        self.forward_rows.append(len(input_ids))
        with self.model.disable_adapter() if role == "reference" else nullcontext():
            logits = self.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask)
            ).logits
        return logits[:, prompt_len - 1 : -1]

    def scores(self, conversations, batch_size, max_length):
        self.reward_batches.append(batch_size)
        return torch.tensor([len(c[-1]["content"]) / 10 for c in conversations])


SAMPLING = Sampling(max_prompt_length=64, max_new_tokens=8, temperature=0.7, top_k=0, top_p=1.0)


@pytest.fixture(scope="module")
def prompts() -> list[list[dict]]:
    rows = generate(seed=3, n_train=0, n_test=5)["test"]
    return [to_preference_example(row["chosen"], row["rejected"])[0]["prompt"] for row in rows]


def test_metrics_are_the_summary_of_the_records(prompts):
    side = TinySide()
    metrics, records = evaluate(side, prompts, SAMPLING, False, 2, 128, seed=1, with_gold=True)
    assert metrics == summarize(records)
    assert len(records) == len(prompts) and set(metrics) == {"rm_score", "kl", "length", "eos_rate", "gold_score"}
    for r, p in zip(records, prompts):
        assert set(r) == {"prompt", "response", "rm_score", "gold_score", "kl", "length", "has_eos"}
        assert r["prompt"] == last_user_text(p) and r["rm_score"] == pytest.approx(len(r["response"]) / 10)
        assert isinstance(r["gold_score"], float) and isinstance(r["has_eos"], bool)
        assert 1 <= r["length"] <= SAMPLING.max_new_tokens and math.isfinite(r["kl"])
    assert any(abs(r["kl"]) > 1e-3 for r in records)  # the policy differs from its reference
    assert side.reward_batches == [2]  # score_batch defaults to chunk_size


def test_no_gold_without_a_gold_judge_and_zero_kl_against_itself(prompts):
    metrics, records = evaluate(TinySide(same_as_reference=True), prompts, SAMPLING, False, 5, 128, 1, False)
    assert "gold_score" not in metrics and all(r["gold_score"] is None for r in records)
    assert metrics == summarize(records) and metrics["kl"] == 0.0


def test_the_draw_is_seeded_and_leaves_the_training_rng_alone(prompts):
    side = TinySide()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = evaluate(side, prompts, SAMPLING, False, 5, 128, seed=7, with_gold=True)
    assert torch.equal(torch.random.get_rng_state(), before)
    again = evaluate(side, prompts, SAMPLING, False, 5, 128, seed=7, with_gold=True)
    assert [r["response"] for r in again[1]] == [r["response"] for r in first[1]]


def test_score_batch_and_chunks_change_only_how_many_rows_a_pass_holds(prompts):
    side = TinySide()
    whole = evaluate(side, prompts, SAMPLING, True, 5, 128, seed=1, with_gold=True)
    side.forward_rows.clear()
    chunked = evaluate(side, prompts, SAMPLING, True, 2, 128, seed=1, with_gold=True, score_batch=3)
    assert max(side.forward_rows) == 3 and side.reward_batches[-1] == 3
    assert [r["response"] for r in chunked[1]] == [r["response"] for r in whole[1]]  # greedy: the same answers
    assert chunked[0] == pytest.approx(whole[0], rel=1e-4, abs=1e-5)


def test_a_policy_that_is_its_reference_skips_the_log_prob_forwards_with_the_same_metrics(prompts):
    # a run's start evaluation: the policy begins as its reference, so the KL is exactly 0 without computing it
    side = TinySide(same_as_reference=True)
    computed = evaluate(side, prompts, SAMPLING, False, 5, 128, 1, True)
    side.forward_rows.clear()
    skipped = evaluate(side, prompts, SAMPLING, False, 5, 128, 1, True, policy_is_reference=True)
    assert side.forward_rows == [] and skipped == computed
