"""The comparison end to end on a tiny Llama with constructed policies whose answers are known:
a policy equal to its reference (KL 0, implicit-reward accuracy 0.5, the same samples as base), one that
differs, and one that equals its init adapter (the reference is that adapter, not the base)."""

import dataclasses
import json
import logging

import numpy as np
import pytest
from omegaconf import open_dict

from rlhf.config import from_node
from rlhf.data.gold_judge import gold_score_batch
from rlhf.errors import ConfigError
from rlhf.evaluation.policies import PolicyBank, PolicyView
from rlhf.evaluation.run import Settings, evaluate, generate
from rlhf.evaluation.tables import HEADLINE_COLUMNS
from rlhf.modeling.models import load_causal_lm
from rlhf.run.job import build_job
from tests.evaluation.helpers import _tiny, make_policy_run, make_rm_run, tiny_evaluate

PNGS = ("scores.png", "reward_vs_kl.png", "training_curves.png")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, model_cache):
    root = tmp_path_factory.mktemp("runs")
    sft = make_policy_run(root / "sft", algo="sft", random_b=True, seed=3)
    (sft / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 2.0 / s}) + "\n" for s in range(1, 6)))
    return {
        "judge": make_rm_run(root / "rm"),
        "same": make_policy_run(root / "same"),  # B = 0: the policy is its reference, the base
        "diff": make_policy_run(root / "diff", algo="ppo", random_b=True, seed=5),
        "initref": make_policy_run(root / "initref", init_adapter=sft, adapter_from=sft / "adapter"),
        "sft": sft,
    }


def evaluation_cfg(tmp_path, runs, policies, **extra):
    cfg = tiny_evaluate(tmp_path / "outputs", judge=str(runs["judge"]), **extra)
    with open_dict(cfg):
        cfg.policies = policies
    return cfg


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def results(tmp_path_factory, runs):
    """Four policies; more prompts asked for (10) than the test split has (8)."""
    out = tmp_path_factory.mktemp("evaluation")
    policies = {"base": "base", "same": str(runs["same"]), "diff": str(runs["diff"]), "initref": str(runs["initref"])}
    warnings, logger = Warnings(), logging.getLogger("rlhf.evaluation.run")
    logger.addHandler(warnings)
    try:
        res = evaluate(evaluation_cfg(out, runs, policies, **{"evaluation.n_prompts": "10"}), out / "run")
    finally:
        logger.removeHandler(warnings)
    return out, res, warnings.messages


def test_writes_the_files_with_the_headline_table(results):
    out, res, _ = results
    run = out / "run"
    for name in ("results.json", "results.md", "samples.jsonl", "metrics.jsonl", *PNGS):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert json.loads((run / "results.json").read_text())["policies"].keys() == {"base", "same", "diff", "initref"}
    md = (run / "results.md").read_text()
    lines = md.splitlines()
    header = lines.index("| " + " | ".join(HEADLINE_COLUMNS) + " |")
    assert [line.split(" | ")[0].strip("| ") for line in lines[header + 2 : header + 6]] == [
        "base",
        "same",
        "diff",
        "initref",
    ]
    for section in ("## Paired differences", "## All metrics", "## Gold score per family", "## Definitions"):
        assert section in md
    assert "| same - base | judge RM | +0.000 | [+0.000, +0.000] | no difference at 95% |" in lines


def test_fewer_test_prompts_than_asked_uses_them_all_with_one_warning(results):
    out, res, warnings = results
    n = res["dataset"]["prompts"]
    assert res["settings"]["n_prompts"] == 10 and 0 < n < 10
    assert [w for w in warnings if "n_prompts" in w] == [
        f"evaluation.n_prompts=10 but the test split has {n} rows: using {n}"
    ]
    assert len((out / "run" / "samples.jsonl").read_text().splitlines()) == n


def test_samples_hold_every_policys_per_prompt_scores(results):
    out, res, _ = results
    samples = [json.loads(line) for line in (out / "run" / "samples.jsonl").read_text().splitlines()]
    assert [s["index"] for s in samples] == list(range(res["dataset"]["prompts"]))
    for name, p in res["policies"].items():
        rows = [s[name] for s in samples]
        assert {"response", "rm", "gold", "kl", "length", "eos"} <= rows[0].keys()
        assert np.mean([r["rm"] for r in rows]) == pytest.approx(p["avg_reward"]["mean"])
        assert np.mean([r["gold"] for r in rows]) == pytest.approx(p["gold_score"]["mean"])
        assert np.mean([r["length"] for r in rows]) == pytest.approx(p["length"])
        assert np.mean([r["eos"] for r in rows]) == pytest.approx(p["eos_rate"])


def test_paired_differences_of_every_pair_on_both_scores(results):
    out, res, _ = results
    pairs = [("diff", "same"), ("initref", "same"), ("initref", "diff"), ("same", "base"), ("diff", "base"),
             ("initref", "base")]  # fmt: skip
    assert [(c["a"], c["b"], c["score"]) for c in res["comparisons"]] == [
        (a, b, score) for a, b in pairs for score in ("rm", "gold")
    ]
    samples = [json.loads(line) for line in (out / "run" / "samples.jsonl").read_text().splitlines()]
    for c in res["comparisons"]:
        per_prompt = [s[c["a"]][c["score"]] - s[c["b"]][c["score"]] for s in samples]
        assert c["mean_diff"] == pytest.approx(np.mean(per_prompt)) and c["n"] == len(samples)
        low, high = c["interval"]
        assert low <= c["mean_diff"] <= high
        expected = f"{c['a']} better" if low > 0 else f"{c['b']} better" if high < 0 else "no difference at 95%"
        assert c["verdict"] == expected
    same = [c for c in res["comparisons"] if (c["a"], c["b"]) == ("same", "base")]
    assert [(c["mean_diff"], c["interval"], c["verdict"]) for c in same] == [
        (0.0, [0.0, 0.0], "no difference at 95%")
    ] * 2
    diff = res["policies"]["diff"]["gold_delta_vs_base"]  # the same paired bootstrap
    (row,) = [c for c in res["comparisons"] if (c["a"], c["b"], c["score"]) == ("diff", "base", "gold")]
    assert [row["mean_diff"], *row["interval"]] == [diff["mean"], diff["low"], diff["high"]]


def test_policy_equal_to_its_reference_has_kl_zero_and_accuracy_one_half(results):
    _, res, _ = results
    same = res["policies"]["same"]
    assert same["reference"] == "base" and same["accuracy_kind"] == "implicit reward"
    # the policy's log-probs come from the decoding's logits, the reference's from a forward: equal up to rounding
    assert same["kl"]["mean"] == pytest.approx(0.0, abs=1e-4) and same["kl"]["max"] == pytest.approx(0.0, abs=1e-4)
    assert same["accuracy"] == 0.5  # every pair ties


def test_identical_responses_give_win_rate_one_half(results):
    out, res, _ = results
    samples = [json.loads(line) for line in (out / "run" / "samples.jsonl").read_text().splitlines()]
    assert [s["same"]["response"] for s in samples] == [s["base"]["response"] for s in samples]  # same seed, same model
    same = res["policies"]["same"]
    assert same["win_rate_vs_base_rm"]["mean"] == 0.5 and same["win_rate_vs_base_gold"]["mean"] == 0.5
    assert same["gold_delta_vs_base"]["mean"] == 0.0 and same["reward_hacking"] == "not flagged"


def test_reference_is_the_init_adapter_when_the_run_started_from_one(results, runs):
    _, res, _ = results
    initref = res["policies"]["initref"]
    assert initref["reference"] == str((runs["sft"] / "adapter").resolve())
    assert initref["kl"]["max"] == pytest.approx(0.0, abs=1e-4) and initref["accuracy"] == 0.5
    diff = res["policies"]["diff"]  # a random adapter against the base: it moved
    assert abs(diff["kl"]["mean"]) > 1e-3 and diff["accuracy_kind"] == "implicit reward"


def test_base_metrics(results):
    _, res, _ = results
    base = res["policies"]["base"]
    assert base["algo"] == "base" and base["kl"]["mean"] == 0.0
    assert base["accuracy_kind"] == "length-normalised log-likelihood" and base["accuracy"] == base["ll_accuracy"]
    assert "win_rate_vs_base_rm" not in base and "reward_hacking" not in base
    for p in res["policies"].values():
        for key in ("avg_reward", "gold_score", "win_rate_vs_chosen_rm", "win_rate_vs_chosen_gold"):
            assert p[key]["low"] <= p[key]["mean"] <= p[key]["high"], key
        assert 0 <= p["eos_rate"] <= 1 and 0 < p["length"] <= 6 and 0 <= p["distinct_2"] <= 1
        assert set(p["gold_by_family"]) <= {"arithmetic", "facts", "advice", "harmful"}


def test_empty_prompt_set_is_an_error(tmp_path, runs):
    cfg = evaluation_cfg(tmp_path, runs, {"base": "base"}, **{"evaluation.n_prompts": "0"})
    with pytest.raises(ConfigError, match=r"evaluation\.n_prompts=0 is out of range: must be >= 1"):
        evaluate(cfg, tmp_path / "run")


def test_greedy_base_only_run_with_wandb_offline(tmp_path, runs, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = evaluation_cfg(
        tmp_path,
        runs,
        {"base": "base", "sft": str(runs["sft"])},
        **{"logger": "wandb", "logger.mode": "offline", "evaluation.greedy": "true", "evaluation.n_pairs": "0"},
    )
    res = evaluate(cfg, tmp_path / "run")
    assert res["policies"]["sft"]["accuracy"] is None  # n_pairs=0 skips the pairs
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    again = evaluate(cfg, tmp_path / "run2")  # greedy: the same responses every time
    assert again["policies"]["sft"]["avg_reward"] == res["policies"]["sft"]["avg_reward"]
    assert np.isfinite(res["policies"]["sft"]["kl"]["mean"])


def test_several_samples_per_prompt_score_each_prompt_by_their_mean(tmp_path, runs):
    """evaluation.samples_per_prompt=3: every policy answers each prompt 3 times; samples.jsonl keeps the 3
    responses and their scores, a prompt's score is their mean, and the intervals resample the prompts."""
    policies = {"base": "base", "diff": str(runs["diff"])}
    cfg = evaluation_cfg(tmp_path, runs, policies, **{"evaluation.samples_per_prompt": "3", "evaluation.n_pairs": "0"})
    res = evaluate(cfg, tmp_path / "run")
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == res["dataset"]["prompts"] == 6
    for name in policies:
        rows = [s[name] for s in samples]
        assert all(len(r["responses"]) == len(r["rm_each"]) == len(r["gold_each"]) == 3 for r in rows)
        assert all(r["response"] == r["responses"][0] for r in rows)
        assert [r["rm"] for r in rows] == pytest.approx([np.mean(r["rm_each"]) for r in rows])
        assert [r["gold"] for r in rows] == pytest.approx([np.mean(r["gold_each"]) for r in rows])
        each = [g for s in samples for g in gold_score_batch([[{"role": "user", "content": s["prompt"]}]] * 3,
                                                             s[name]["responses"])]  # fmt: skip
        assert each == pytest.approx([g for r in rows for g in r["gold_each"]])  # the judge's score of each response
        assert res["policies"][name]["avg_reward"]["mean"] == pytest.approx(np.mean([r["rm"] for r in rows]))
    # a win rate: each prompt's share of its 3 responses that beat the chosen one
    wins = [
        np.mean([(x > s["chosen_rm"]) + 0.5 * (x == s["chosen_rm"]) for x in s["diff"]["rm_each"]]) for s in samples
    ]
    assert res["policies"]["diff"]["win_rate_vs_chosen_rm"]["mean"] == pytest.approx(np.mean(wins))
    gold_diff = [c for c in res["comparisons"] if (c["a"], c["b"], c["score"]) == ("diff", "base", "gold")][0]
    assert gold_diff["mean_diff"] == pytest.approx(np.mean([s["diff"]["gold"] - s["base"]["gold"] for s in samples]))
    assert gold_diff["n"] == 6  # prompts, not responses
    assert res["settings"]["samples_per_prompt"] == 3


def test_several_samples_of_a_greedy_answer_are_refused(tmp_path):
    cfg = tiny_evaluate(tmp_path, **{"evaluation.samples_per_prompt": "4", "evaluation.greedy": "true"})
    with pytest.raises(ConfigError, match=r"samples_per_prompt=4 with evaluation.greedy=true draws the same response"):
        from_node(Settings, cfg.evaluation, "evaluation")
    cfg = tiny_evaluate(tmp_path, **{"evaluation.samples_per_prompt": "0"})
    with pytest.raises(ConfigError, match=r"evaluation.samples_per_prompt=0 is out of range: must be >= 1"):
        from_node(Settings, cfg.evaluation, "evaluation")


def test_a_chunk_below_one_is_a_one_line_error(tmp_path):
    cfg = tiny_evaluate(tmp_path, **{"evaluation.chunk_size": "0"})
    with pytest.raises(ConfigError) as err:
        from_node(Settings, cfg.evaluation, "evaluation")
    assert str(err.value) == (
        "evaluation.chunk_size=0 is out of range: must be >= 1 prompt per generate() call, e.g. 64 on CPU "
        "(lower it if generation runs out of memory)"
    )


def test_chunks_give_the_same_greedy_answers_and_kl(tmp_path, runs, monkeypatch):
    """evaluation.chunk_size bounds each generate call and log-prob forward; greedy answers and KL stay the same."""
    model, hardware, path, tokenizer = _tiny()
    bank = PolicyBank(load_causal_lm(path, model, hardware, tokenizer), tokenizer)
    policy = bank.attach(runs["diff"] / "adapter")
    calls, real = [], PolicyView.generate

    def counted(view, input_ids, attention_mask, config, **kwargs):
        calls.append(len(input_ids))
        return real(view, input_ids, attention_mask, config, **kwargs)

    monkeypatch.setattr(PolicyView, "generate", counted)
    out = {}
    for size in (2, 5):
        cfg = tiny_evaluate(tmp_path, **{"evaluation.greedy": "true", "evaluation.chunk_size": str(size)})
        job = build_job(cfg, tmp_path / f"run{size}", job_type="evaluate", group="tests", tags=[])
        prompts = [ex["prompt"] for ex in job.data.test[:5]]
        out[size] = generate(bank, policy, None, prompts, from_node(Settings, cfg.evaluation, "evaluation"), seed=0)
    assert calls == [2, 2, 1, 5]
    assert out[2].texts == out[5].texts and (out[2].lengths == out[5].lengths).all()
    assert np.abs(out[5].kl).max() > 1e-3 and np.allclose(out[2].kl, out[5].kl, atol=1e-4)
    # answered shortest first, returned in the order given: reversed prompts give reversed answers
    back = generate(bank, policy, None, prompts[::-1], from_node(Settings, cfg.evaluation, "evaluation"), seed=0)
    assert back.texts == out[5].texts[::-1] and np.allclose(back.kl, out[5].kl[::-1], atol=1e-4)
    assert (back.lengths == out[5].lengths[::-1]).all() and (back.has_eos == out[5].has_eos[::-1]).all()


def test_bf16_weights_take_the_policys_kl_side_from_a_forward(tmp_path, runs):
    """bf16 weights: cached decoding rounds unlike a forward over the whole sequence, so the policy's log-probs come
    from a forward as the reference's do, and a policy equal to its reference (B = 0) has KL exactly 0."""
    model, hardware, path, tokenizer = _tiny()
    fp32_bank = PolicyBank(load_causal_lm(path, model, hardware, tokenizer), tokenizer)
    bf16 = dataclasses.replace(hardware, dtype="bfloat16")
    bank = PolicyBank(load_causal_lm(path, model, bf16, tokenizer), tokenizer)
    assert fp32_bank.decoding_matches_scoring and not bank.decoding_matches_scoring
    policy = bank.attach(runs["same"] / "adapter")
    cfg = tiny_evaluate(tmp_path)
    job = build_job(cfg, tmp_path / "run", job_type="evaluate", group="tests", tags=[])
    prompts = [ex["prompt"] for ex in job.data.test[:6]]
    out = generate(bank, policy, None, prompts, from_node(Settings, cfg.evaluation, "evaluation"), seed=0)
    assert out.lengths.sum() > 0 and (out.kl == 0).all()
