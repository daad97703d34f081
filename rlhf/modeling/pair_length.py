"""Preference pairs fitted to a token budget by cutting their prompts, instead of TRL's silent drop.

TRL's RewardTrainer drops every pair whose prompt + chosen or prompt + rejected renders to more than
``max_length`` tokens; real HH-RLHF dialogues are long, so at 256 tokens about a quarter of the pairs vanish.
Here a long pair keeps its final turns instead: :func:`truncate_prompt` (the cut DPO, SFT, PPO and evaluation
use: whole leading turns first, then the start of the last user turn's text) shortens the prompt until it and
the longer response fit. Only a pair whose response leaves no room for a prompt is dropped. Lengths are counted
as TRL counts them: the whole conversation rendered with the chat template (:func:`render_ids`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlhf.modeling.logprobs import Messages, prompt_length, render_ids, truncate_prompt

# Re-render and shrink this many times when decoding then re-encoding the cut shifts a token or two.
_RETRIES = 4


@dataclass
class FittedPairs:
    """The pairs that fit (some with a shorter prompt), and how many were cut or dropped to get there."""

    examples: list[dict]
    cut: int
    dropped: int
    lengths: list[int]  # every given pair's whole length (prompt + longer response, before any cut), in order

    def report(self, max_length: int, key: str = "algo.max_length") -> str:
        """One line on what the run trains on: pairs used, cut and dropped at ``max_length``, and the whole pairs'
        median and 95th-percentile tokens; when more than a quarter were cut or dropped, the ``key`` value that
        would keep 95% whole and its cost in tokens per pair."""
        given = len(self.lengths)
        ordered = sorted(self.lengths)
        median, p95 = _percentile(ordered, 0.5), _percentile(ordered, 0.95)
        line = (
            f"pairs: {len(self.examples)} of {given} used, {self.cut} cut to their final turns and {self.dropped} "
            f"dropped at {key}={max_length}; whole pairs are {median} tokens at the median, {p95} at the 95th "
            "percentile"
        )
        if self.cut + self.dropped > given / 4:
            kept = sum(min(n, max_length) for n in self.lengths)
            whole = sum(min(n, p95) for n in self.lengths)
            line += (
                f". More than a quarter were shortened: {key}={p95} would keep 95% whole, at {whole / kept:.1f}x "
                "the tokens per pair (time and activation memory grow at least as fast)"
            )
        return line


def _percentile(ordered: list[int], q: float) -> int:
    """The nearest-rank ``q`` quantile of sorted ``ordered`` (an observed length, not an interpolation)."""
    if not ordered:
        return 0
    rank = math.ceil(q * len(ordered))  # 1-based: the smallest value with at least q of the values at or below it
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def pair_length(tokenizer, prompt: Messages, example: dict) -> int:
    """Tokens of the longer of prompt + chosen and prompt + rejected, rendered whole as TRL's RewardTrainer does."""
    return max(len(render_ids(tokenizer, prompt + example[side])) for side in ("chosen", "rejected"))


def _shorter_prompt(tokenizer, example: dict, max_length: int, room_needed: int) -> Messages | None:
    """The prompt cut so that it and the longer response fit in ``max_length`` tokens, or None when the response
    leaves fewer than ``room_needed`` tokens for it (the template's own tokens and one token of text)."""
    prompt = example["prompt"]
    excess = pair_length(tokenizer, prompt, example) - max_length
    budget = prompt_length(tokenizer, prompt)
    for _ in range(_RETRIES):
        budget -= excess
        if budget < room_needed:
            return None
        prompt = truncate_prompt(tokenizer, example["prompt"], budget, "algo.max_length")
        excess = pair_length(tokenizer, prompt, example) - max_length
        if excess <= 0:
            return prompt
    return None


def fit_pairs(tokenizer, examples: list[dict], max_length: int) -> FittedPairs:
    """``examples`` whose prompt + longer response fit ``max_length`` tokens: a pair that fits stays as it is, a
    longer one keeps its final turns (``cut``), one whose response alone does not fit is left out (``dropped``)."""
    room_needed = prompt_length(tokenizer, [{"role": "user", "content": ""}]) + 1
    kept, cut, dropped, lengths = [], 0, 0, []
    for example in examples:
        lengths.append(pair_length(tokenizer, example["prompt"], example))
        if lengths[-1] <= max_length:
            kept.append(example)
            continue
        prompt = _shorter_prompt(tokenizer, example, max_length, room_needed)
        if prompt is None:
            dropped += 1
        else:
            kept.append({**example, "prompt": prompt})
            cut += 1
    return FittedPairs(kept, cut, dropped, lengths)
