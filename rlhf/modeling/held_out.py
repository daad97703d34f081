"""Held-out evaluation inside a training run (PPO, GRPO, RLOO): the same prompts before and after training.

Metrics (means over the prompts): ``rm_score`` (the frozen reward model), ``gold_score`` (the synthetic set's
gold judge, when the data has one), ``kl`` (sum over response tokens of log pi - log pi_ref on the sampled
tokens: an unbiased estimate of KL(policy || reference) per response), ``length`` (response tokens, EOS
included) and ``eos_rate``. Sampling is seeded and does not move the training RNG, so the start and final
evaluations draw with the same random numbers. Generation runs ``chunk_size`` prompts per generate call; the
log-prob forwards and the reward model ``score_batch`` sequences at a time (default ``chunk_size``).

:func:`evaluate` returns the metrics and one record per prompt; the metrics are :func:`summarize` of the
records and of nothing else, so records gathered from several processes give the metrics of all their prompts.

The model side is any object with what rlhf/modeling/generation.py samples from (``tokenizer``, ``device``,
``generate``, ``response_head`` for the roles "policy" and "reference") plus the reward model's
``scores(conversations, batch_size, max_length) -> [N]``: PPO's Roles, the online arms' PolicyView.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch

from rlhf.data.gold_judge import gold_score_batch
from rlhf.modeling.generation import Sampling, micro_batches, response_logprobs, sample
from rlhf.modeling.intervals import paired_difference

__all__ = [
    "evaluate",
    "summarize",
    "last_user_text",
    "chunk_seed",
    "start_to_final",
    "within_noise",
    "change_summary",
    "read_start_records",
]

log = logging.getLogger(__name__)

CHANGE_SCORES = ("rm_score", "gold_score")  # the scores whose start-to-final change gets an interval


def start_to_final(start: list[dict], final: list[dict], confidence: float = 0.95, seed: int = 0) -> dict[str, dict]:
    """The change of each score from the start to the final evaluation, paired per prompt: start, final [N]
    records of the same N prompts in the same order (as :func:`evaluate` returns them) -> ``{"<score>_change":
    {mean, low, high, n}}``, the mean of final - start with a percentile-bootstrap interval over prompts (1000
    resamples; a prompt drawn brings both its readings, so how hard it is cancels out). Scores a record lacks
    (gold without a gold judge) are left out; so is everything when the prompts do not line up (a resume whose
    start records are gone)."""
    if len(start) != len(final) or [r["prompt"] for r in start] != [r["prompt"] for r in final]:
        return {}
    out = {}
    for key in CHANGE_SCORES:
        if all(r.get(key) is not None for r in start + final):
            diff = paired_difference([r[key] for r in final], [r[key] for r in start], confidence=confidence, seed=seed)
            out[f"{key}_change"] = diff.as_dict()
    return out


def within_noise(changes: dict[str, dict], confidence: float = 0.95) -> list[str]:
    """One sentence per score whose start-to-final change interval holds 0: the reading cannot tell a gain
    from a loss, whatever its sign."""
    return [
        f"the held-out {key.removesuffix('_change')} changed by {c['mean']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}] "
        f"over {c['n']} prompts: within noise at {confidence:.0%}, so this evaluation cannot tell whether the policy "
        "improved (more prompts, algo.eval_prompts, narrow the interval)"
        for key, c in changes.items()
        if c["low"] <= 0 <= c["high"]
    ]


def read_start_records(path: Path) -> list[dict]:
    """The start evaluation's records from a run's eval_samples.jsonl (what a resumed run has of its start; none
    if the file is gone)."""
    if not Path(path).is_file():
        return []
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row for row in rows if row.get("when") == "start"]


def change_summary(start: list[dict], final: list[dict], seed: int = 0) -> dict[str, float]:
    """:func:`start_to_final`, logged (with :func:`within_noise`'s sentences as warnings), as flat summary
    fields: ``<score>_change`` and its ``_low`` / ``_high`` (95%)."""
    changes = start_to_final(start, final, seed=seed)
    flat = {}
    for key, c in changes.items():
        log.info("held-out %s, start to final: %+.3f [%+.3f, %+.3f] (95%%, paired over %d prompts)",
                 key.removesuffix("_change"), c["mean"], c["low"], c["high"], c["n"])  # fmt: skip
        flat |= {key: c["mean"], f"{key}_low": c["low"], f"{key}_high": c["high"]}
    for sentence in within_noise(changes):
        log.warning("%s", sentence)
    return flat


def chunk_seed(seed: int, index: int) -> int:
    """The sampling seed of chunk ``index`` of an evaluation's prompts (chunk 0 keeps ``seed``): seeded per chunk,
    an evaluation whose chunks several processes share draws what one process draws."""
    return seed + 100_003 * index


def last_user_text(prompt: list[dict]) -> str:
    """The last user turn of a conversation: what a record shows as its prompt."""
    return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")


def summarize(records: list[dict]) -> dict[str, float]:
    """The metrics of per-prompt records (as :func:`evaluate` returns them): the means of ``rm_score``, ``kl``,
    ``length`` and ``has_eos`` (as ``eos_rate``), and of ``gold_score`` when every record has one. Sums are
    exact (math.fsum), so the order of the records (e.g. gathered from several processes) does not matter."""
    if not records:
        raise ValueError("summarize needs at least one record")
    n = len(records)

    def mean(key: str) -> float:
        return math.fsum(float(r[key]) for r in records) / n

    metrics = {"rm_score": mean("rm_score"), "kl": mean("kl"), "length": mean("length"), "eos_rate": mean("has_eos")}
    if all(r.get("gold_score") is not None for r in records):
        metrics["gold_score"] = mean("gold_score")
    return metrics


@torch.no_grad()
def evaluate(
    model,
    prompts: list[list[dict]],
    sampling: Sampling,
    greedy: bool,
    chunk_size: int,
    reward_max_length: int,
    seed: int,
    with_gold: bool,
    score_batch: int | None = None,
    policy_is_reference: bool = False,
) -> tuple[dict[str, float], list[dict]]:
    """(metrics, one record per prompt) for ``model``'s answers to ``prompts``.

    A record: ``prompt`` (the last user turn), ``response``, ``rm_score``, ``gold_score`` (None without
    ``with_gold``), ``kl``, ``length``, ``has_eos``; metrics = ``summarize(records)``. ``chunk_size`` prompts per
    generate call; ``score_batch`` (None: ``chunk_size``) sequences per log-prob forward, sorted by length, and
    per reward-model batch. Log-probs are taken at the sampling temperature, greedy or not.
    ``policy_is_reference``: the policy has the reference's weights (a run's start: the policy begins as its
    reference), so the KL is exactly 0 and its two log-prob forwards are skipped."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        rollout = sample(model, prompts, sampling, greedy, chunk_size=chunk_size)
    batch = score_batch or chunk_size
    temperature = sampling.temperature
    logprobs = torch.zeros(rollout.mask.shape, device=rollout.mask.device)
    ref_logprobs = torch.zeros_like(logprobs)
    for rows in micro_batches(rollout, torch.arange(len(rollout)), batch) if not policy_is_reference else []:
        logprobs[rows] = response_logprobs(model, "policy", rollout, rows, temperature)[0]
        ref_logprobs[rows] = response_logprobs(model, "reference", rollout, rows, temperature)[0]
    scores = model.scores(rollout.conversations(), batch, reward_max_length)
    mask = rollout.mask.float()
    kl = ((logprobs - ref_logprobs) * mask).sum(1)
    gold = gold_score_batch(rollout.prompts, rollout.texts) if with_gold else [None] * len(rollout)
    records = [
        {
            "prompt": last_user_text(p),
            "response": t,
            "rm_score": s,
            "gold_score": g,
            "kl": k,
            "length": n,
            "has_eos": e,
        }
        for p, t, s, g, k, n, e in zip(
            rollout.prompts,
            rollout.texts,
            scores.float().tolist(),
            gold,
            kl.tolist(),
            rollout.mask.sum(1).tolist(),
            rollout.has_eos.tolist(),
        )
    ]
    return summarize(records), records
