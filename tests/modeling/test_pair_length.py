"""Long reward-model pairs keep their final turns instead of vanishing inside TRL; only a response that alone
does not fit is dropped (tiny Llama's tokenizer, no model)."""

import pytest

from rlhf.config import ModelSettings, from_node
from rlhf.data.hh_rlhf import render_transcript
from rlhf.data.jsonl import read_hh_rows
from rlhf.data.preference import parse_rows
from rlhf.modeling.models import load_tokenizer, model_directory
from rlhf.modeling.pair_length import fit_pairs, pair_length
from tests.conftest import compose_train

MAX_LENGTH = 64


@pytest.fixture(scope="module")
def tokenizer():
    model = from_node(ModelSettings, compose_train(["model=tiny_llama"]).model, "model")
    return load_tokenizer(model_directory(model), model)


def hh_row(turns: list[str], chosen: str, rejected: str) -> dict:
    roles = ["user", "assistant"] * len(turns)
    prompt = render_transcript([{"role": r, "content": t} for r, t in zip(roles, turns)])
    return {"chosen": f"{prompt}\n\nAssistant: {chosen}", "rejected": f"{prompt}\n\nAssistant: {rejected}"}


ROWS = [  # a hand-built HH file: one pair that fits, one with a long history, one with a long response
    hh_row(["Is water wet?"], "Yes, in everyday terms.", "No."),
    hh_row(
        [
            "Tell me the whole history of bread. " * 6,
            "Bread is at least fourteen thousand years old. " * 6,
            "How long should dough rise?",
        ],
        "About an hour, until doubled.",
        "Forever.",
    ),  # fmt: skip
    hh_row(["Write me a story."], "Once upon a time there was a loaf. " * 20, "No."),
]


def test_long_prompts_lose_leading_turns_and_overlong_responses_are_dropped(tokenizer):
    examples, _ = parse_rows(ROWS, "hand-built", max_bad_fraction=0.0)
    old_rule_drops = sum(pair_length(tokenizer, ex["prompt"], ex) > MAX_LENGTH for ex in examples)
    assert old_rule_drops == 2  # TRL's filter would lose both long pairs

    fitted = fit_pairs(tokenizer, examples, MAX_LENGTH)
    assert (fitted.cut, fitted.dropped, len(fitted.examples)) == (1, 1, 2)
    short, cut = fitted.examples
    assert short == examples[0]  # a pair that fits is untouched
    assert cut["prompt"] == examples[1]["prompt"][-1:]  # the two long leading turns went, the question stayed
    assert (cut["chosen"], cut["rejected"]) == (examples[1]["chosen"], examples[1]["rejected"])
    assert pair_length(tokenizer, cut["prompt"], cut) <= MAX_LENGTH


def test_every_kept_real_pair_fits_and_fewer_are_lost(tokenizer, hh_sample):
    examples = [ex for ex in parse_rows(read_hh_rows(hh_sample), str(hh_sample), 0.05)[0] if ex is not None]
    old_rule_drops = sum(pair_length(tokenizer, ex["prompt"], ex) > 256 for ex in examples)
    fitted = fit_pairs(tokenizer, examples, 256)
    assert old_rule_drops > 0 and fitted.cut + fitted.dropped == old_rule_drops
    assert fitted.dropped < old_rule_drops / 4
    assert all(pair_length(tokenizer, ex["prompt"], ex) <= 256 for ex in fitted.examples)
    assert all(ex["prompt"][0]["role"] == "user" for ex in fitted.examples)


def test_the_length_report_names_the_counts_and_a_length_that_keeps_95_percent_whole(tokenizer):
    examples, _ = parse_rows(ROWS, "hand-built", max_bad_fraction=0.0)
    lengths = [pair_length(tokenizer, ex["prompt"], ex) for ex in examples]
    fitted = fit_pairs(tokenizer, examples, MAX_LENGTH)
    assert fitted.lengths == lengths
    report = fitted.report(MAX_LENGTH)
    ordered = sorted(lengths)  # 3 pairs: the median is the middle one, the 95th percentile the longest
    assert report.startswith("pairs: 2 of 3 used, 1 cut to their final turns and 1 dropped at algo.max_length=64")
    assert f"{ordered[1]} tokens at the median, {ordered[2]} at the 95th percentile" in report
    ratio = sum(lengths) / sum(min(n, MAX_LENGTH) for n in lengths)  # 2 of 3 shortened: more than a quarter
    assert f"algo.max_length={ordered[2]} would keep 95% whole, at {ratio:.1f}x the tokens per pair" in report
    assert "would keep" not in fit_pairs(tokenizer, examples[:1] * 3 + examples[1:2], MAX_LENGTH).report(MAX_LENGTH)
