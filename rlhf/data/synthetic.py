"""The embedded synthetic HH preference set: a seeded generator plus the gold judge that knows its truth.

``generate(seed, n_train, n_test)`` returns rows in the Anthropic HH-RLHF format, so they go through
the same parser as real HH files (:func:`rlhf.data.hh_rlhf.to_preference_example`)::

    {"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": "...", "family": "arithmetic"}

Both transcripts share every turn but the last Assistant one. About 30% of prompts are multi-turn:
a greeting exchange and/or a prior Q&A before the real question, which always comes last.

Guarantees:

- the same arguments give byte-identical rows (only ``random.Random(seed)`` is used; nothing
  depends on ``hash()`` or set order, so ``PYTHONHASHSEED`` does not matter);
- a final question appears at most once in the whole dataset, so train and test prompts never
  overlap (not even with different greetings in front);
- the test split is drawn first, so it depends on ``seed``, ``n_test`` and the weights only:
  growing ``n_train`` keeps the test set fixed;
- per-family counts follow ``family_weights`` exactly up to rounding (largest remainder).

The gold judge (:mod:`rlhf.data.gold_judge`) is re-exported here: ``gold_score``,
``gold_score_batch``, ``prompt_info``, ``family_of``.
"""

from __future__ import annotations

import math
import numbers
import random
import time
from collections.abc import Mapping
from typing import Any

from rlhf.data.gold_judge import PromptInfo, family_of, gold_breakdown, gold_score, gold_score_batch, prompt_info
from rlhf.data.hh_rlhf import render_transcript, to_preference_example
from rlhf.data.synthetic_families import BUILDERS, FAMILIES, build_arithmetic, build_facts, question_capacity
from rlhf.errors import ConfigError

__all__ = [
    "FAMILIES",
    "PromptInfo",
    "bench_synthetic",
    "family_of",
    "generate",
    "gold_breakdown",
    "gold_score",
    "gold_score_batch",
    "prompt_info",
]

# Share of prompts with earlier turns, split as: greeting only, prior Q&A only, both.
MULTI_TURN_SHARES = (("greeting", 0.15), ("prior_qa", 0.10), ("greeting_and_prior_qa", 0.05))
# A family may use at most this share of its distinct questions; beyond it sampling without repeats slows down.
MAX_CAPACITY_SHARE = 0.5
MAX_TRIES_PER_ROW = 1000

GREETINGS = (
    ("Hi!", "Hi! How can I help you today?"),
    ("Hello there.", "Hello! What can I do for you?"),
    ("Hey, how are you?", "I'm doing well, thanks for asking! What's on your mind?"),
    ("Good morning!", "Good morning! How can I help?"),
    ("Hi, can I ask you something?", "Of course, go ahead."),
    ("Hello! I have a question.", "Sure, I'm listening."),
)


def _validated_weights(family_weights: Any) -> dict[str, float]:
    """Equal mix by default; otherwise a family -> weight mapping (families left out get 0)."""
    valid = ", ".join(FAMILIES)
    if family_weights is None:
        return {family: 1.0 for family in FAMILIES}
    if not isinstance(family_weights, Mapping) and not hasattr(family_weights, "items"):
        raise ConfigError(
            f"family_weights must be a mapping family -> weight, got {family_weights!r}; valid families: {valid}"
        )
    weights = {family: 0.0 for family in FAMILIES}
    for family, weight in family_weights.items():
        if family not in weights:
            raise ConfigError(f"unknown family {family!r} in family_weights; valid families: {valid}")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
            raise ConfigError(
                f"family_weights[{family!r}] = {weight!r} must be a finite number >= 0 (valid families: {valid})"
            )
        weights[family] = float(weight)
    if sum(weights.values()) <= 0:
        raise ConfigError(
            f"family_weights {dict(family_weights)!r} sum to zero; give at least one of {valid} a positive weight"
        )
    return weights


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _family_counts(n_rows: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``n_rows`` by weight with the largest-remainder method (ties go to the earlier family)."""
    total = sum(weights.values())
    exact = {family: n_rows * weights[family] / total for family in FAMILIES}
    counts = {family: math.floor(exact[family]) for family in FAMILIES}
    by_remainder = sorted(FAMILIES, key=lambda f: (-(exact[f] - counts[f]), FAMILIES.index(f)))
    for family in by_remainder[: n_rows - sum(counts.values())]:
        counts[family] += 1
    return counts


def _context_turns(rng: random.Random) -> list[dict[str, str]]:
    """Earlier turns for a multi-turn prompt (empty for most prompts)."""
    draw, threshold, kind = rng.random(), 0.0, None
    for name, share in MULTI_TURN_SHARES:
        threshold += share
        if draw < threshold:
            kind = name
            break
    turns: list[dict[str, str]] = []
    if kind in ("greeting", "greeting_and_prior_qa"):
        user, assistant = rng.choice(GREETINGS)
        turns += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    if kind in ("prior_qa", "greeting_and_prior_qa"):
        earlier = rng.choice((build_arithmetic, build_facts))(rng)
        turns += [{"role": "user", "content": earlier.question}, {"role": "assistant", "content": earlier.chosen}]
    return turns


def _question_key(question: str) -> str:
    return " ".join(question.lower().split())


def _new_row(family: str, rng: random.Random, used_questions: set[str]) -> dict[str, str]:
    """One row whose final question has not been used anywhere in this dataset yet."""
    for _ in range(MAX_TRIES_PER_ROW):
        turn = BUILDERS[family](rng)
        key = _question_key(turn.question)
        if key in used_questions:
            continue
        used_questions.add(key)
        prompt = _context_turns(rng) + [{"role": "user", "content": turn.question}]
        return {
            "chosen": render_transcript(prompt + [{"role": "assistant", "content": turn.chosen}]),
            "rejected": render_transcript(prompt + [{"role": "assistant", "content": turn.rejected}]),
            "family": family,
        }
    raise ConfigError(
        f"could not draw a new {family} question after {MAX_TRIES_PER_ROW} tries; "
        f"lower n_train/n_test or the weight of {family!r}"
    )


def _generate_split(rng: random.Random, counts: dict[str, int], used_questions: set[str]) -> list[dict[str, str]]:
    families = [family for family in FAMILIES for _ in range(counts[family])]
    rng.shuffle(families)
    return [_new_row(family, rng, used_questions) for family in families]


def generate(
    seed: int, n_train: int, n_test: int, family_weights: Mapping[str, float] | None = None
) -> dict[str, list[dict[str, str]]]:
    """Generate the synthetic HH set: ``{"train": rows, "test": rows}``.

    Each row is ``{"chosen": transcript, "rejected": transcript, "family": name}`` with ``name`` in
    :data:`FAMILIES`. ``family_weights`` maps family -> weight (default: equal mix); families left
    out get weight 0. Raises :class:`~rlhf.errors.ConfigError` for an unknown family, a negative or
    non-numeric weight, weights summing to 0, a non-integer seed or size, or a request for more
    distinct questions than a family can phrase.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    n_train, n_test = _check_count("n_train", n_train), _check_count("n_test", n_test)
    weights = _validated_weights(family_weights)
    train_counts, test_counts = _family_counts(n_train, weights), _family_counts(n_test, weights)
    for family in FAMILIES:
        needed, limit = train_counts[family] + test_counts[family], int(question_capacity(family) * MAX_CAPACITY_SHARE)
        if needed > limit:
            raise ConfigError(
                f"{needed} {family} rows requested (n_train={n_train}, n_test={n_test}) but that "
                f"family supports at most {limit} distinct questions; lower the sizes or its weight"
            )
    rng = random.Random(int(seed))
    used_questions: set[str] = set()
    test = _generate_split(rng, test_counts, used_questions)
    train = _generate_split(rng, train_counts, used_questions)
    return {"train": train, "test": test}


def bench_synthetic(n_pairs: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Time generating ``n_pairs`` rows and gold-scoring both sides of each; prints and returns rates."""
    start = time.perf_counter()
    rows = generate(seed, n_pairs, 0)["train"]
    generate_s = time.perf_counter() - start
    examples = [to_preference_example(row["chosen"], row["rejected"])[0] for row in rows]
    start = time.perf_counter()
    agree = sum(gold_score(ex["prompt"], ex["chosen"]) > gold_score(ex["prompt"], ex["rejected"]) for ex in examples)
    judge_s = time.perf_counter() - start
    result = {
        "generate_seconds": generate_s,
        "pairs_per_second": n_pairs / generate_s,
        "scores_per_second": 2 * n_pairs / judge_s,
        "chosen_above_rejected": agree / n_pairs,
    }
    print(
        f"generated {n_pairs} pairs in {generate_s:.2f}s ({result['pairs_per_second']:.0f} pairs/s); "
        f"gold judge {result['scores_per_second']:.0f} scores/s; "
        f"chosen > rejected on {result['chosen_above_rejected']:.2%}"
    )
    return result


if __name__ == "__main__":
    bench_synthetic()
