"""Two disjoint halves of the training pairs: one for the proxy reward model PPO optimises, one for the judge.

A judge trained on the pairs the proxy saw would share its mistakes, so on a dataset without the gold judge
the reward model (``algo=rm``) takes ``proxy_half`` and the judge (``algo=judge``) ``judge_half``. The halves
come from one permutation seeded by ``dataset.seed``, never the training seed: a proxy and a judge trained with
different seeds still split the same way, and every pair is in exactly one half.
"""

from __future__ import annotations

import numpy as np

from rlhf.config import check_choice
from rlhf.data.gold_judge import has_gold_judge
from rlhf.errors import ConfigError

PAIR_CHOICES = ("auto", "all", "proxy_half", "judge_half")


def resolve_pairs(choice: str, dataset_name: str) -> str:
    """``algo.pairs`` made concrete: ``auto`` is ``all`` where the gold judge exists (it, not a learned model,
    judges there), else ``proxy_half``; the other choices stand."""
    check_choice("algo.pairs", choice, PAIR_CHOICES)
    if choice != "auto":
        return choice
    return "all" if has_gold_judge(dataset_name) else "proxy_half"


def half_indices(n_pairs: int, seed: int) -> tuple[list[int], list[int]]:
    """(proxy, judge) indices into ``n_pairs`` training pairs, each sorted: a seeded permutation cut in two
    (the proxy half takes the extra pair of an odd count)."""
    order = np.random.default_rng(seed).permutation(n_pairs)
    cut = (n_pairs + 1) // 2
    return sorted(order[:cut].tolist()), sorted(order[cut:].tolist())


def select_pairs(examples: list[dict], choice: str, seed: int) -> list[dict]:
    """The training pairs of a concrete ``choice`` (all | proxy_half | judge_half), in their original order."""
    check_choice("algo.pairs", choice, PAIR_CHOICES[1:])
    if choice == "all":
        return list(examples)
    if len(examples) < 2:
        raise ConfigError(
            f"algo.pairs={choice}: {len(examples)} training pair cannot be halved; give more rows or set algo.pairs=all"
        )
    proxy, judge = half_indices(len(examples), seed)
    return [examples[i] for i in (proxy if choice == "proxy_half" else judge)]
