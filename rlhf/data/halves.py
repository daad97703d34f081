"""The proxy and judge halves of the training pairs, by content: which pairs a run trains on, and a record of it.

A judge trained on pairs a compared method saw would share its mistakes. So, under the judge protocol
(``dataset.judge_protocol=true``, set by the tournament on a dataset without a gold judge), the reward model PPO
optimises (``algo=rm``), DPO and SFT train on the proxy half and the judge (``algo=judge``) on the judge half.

A pair's half is decided by its prompt alone: the parity of sha256(``dataset.seed`` | the prompt's JSON). Every pair
of one prompt goes to one half, whatever rows surround it, so a proxy trained on 1,000 rows and a judge on 999 of
them (another ``dataset.max_train_rows``, ``data_files`` or ``subset``) still share no prompt. The salt is the
dataset seed, never the training seed: runs of different seeds split the same way.

Every run that trains on pairs records its half in summary.json (:func:`half_record`): the concrete half, the salt,
the scheme, the count and the sha256 of its sorted pair hashes. :func:`check_disjoint` reads two records and
refuses, in one line, a judge whose pairs overlap another run's or whose overlap it cannot check.
"""

from __future__ import annotations

import hashlib
import json
import logging

from rlhf.config import check_choice
from rlhf.data.gold_judge import has_gold_judge
from rlhf.errors import ConfigError

log = logging.getLogger(__name__)

PAIR_CHOICES = ("auto", "all", "proxy_half", "judge_half")
HALVES = ("proxy_half", "judge_half")
SCHEME = "prompt-sha256-parity-v1"  # how a pair's half is decided: a record of another scheme cannot be compared
PROTOCOL_KEY = "dataset.judge_protocol"
RECORD_KEYS = ("pairs", "pairs_salt", "pairs_scheme", "pairs_count", "pairs_sha256")


def resolve_pairs(choice: str, dataset_name: str, protocol: bool) -> str:
    """``algo.pairs`` made concrete: ``auto`` is ``proxy_half`` under the judge protocol on a dataset without the
    gold judge (there the judge, trained on the other half, judges), else ``all``; the other choices stand."""
    check_choice("algo.pairs", choice, PAIR_CHOICES)
    if choice != "auto":
        return choice
    return "proxy_half" if protocol and not has_gold_judge(dataset_name) else "all"


def _canonical(messages: list[dict]) -> str:
    return json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def half_of(example: dict, salt: int) -> str:
    """``proxy_half`` or ``judge_half``: the parity of sha256(salt | the prompt's canonical JSON)."""
    digest = hashlib.sha256(f"{salt}|{_canonical(example['prompt'])}".encode()).digest()
    return HALVES[digest[-1] & 1]


def pair_hash(example: dict) -> str:
    """sha256 of the pair's content (prompt, chosen, rejected), unsalted: the same pair hashes alike everywhere."""
    content = "\x1e".join(_canonical(example[k]) for k in ("prompt", "chosen", "rejected"))
    return hashlib.sha256(content.encode()).hexdigest()


def select_pairs(examples: list[dict], choice: str, salt: int) -> list[dict]:
    """The training pairs of a concrete ``choice`` (all | proxy_half | judge_half), in their original order."""
    check_choice("algo.pairs", choice, PAIR_CHOICES[1:])
    if choice == "all":
        return list(examples)
    chosen = [ex for ex in examples if half_of(ex, salt) == choice]
    if not chosen:
        raise ConfigError(
            f"algo.pairs={choice}: none of the {len(examples)} training pairs falls in that half (halves go by "
            "prompt); give more rows or set algo.pairs=all"
        )
    return chosen


def half_record(examples: list[dict], choice: str, salt: int) -> dict:
    """What summary.json records about the pairs a run trained on (``examples``, the ``choice`` half): RECORD_KEYS.
    ``pairs_salt`` is None for ``all``; ``pairs_sha256`` hashes the sorted pair hashes (order-free)."""
    hashes = sorted(pair_hash(ex) for ex in examples)
    return {
        "pairs": choice,
        "pairs_salt": None if choice == "all" else salt,
        "pairs_scheme": SCHEME,
        "pairs_count": len(examples),
        "pairs_sha256": hashlib.sha256("\n".join(hashes).encode()).hexdigest(),
    }


def training_pairs(examples: list[dict], choice: str, dataset_name: str, salt: int, protocol: bool, algo: str):
    """(the pairs ``algo`` trains on, their :func:`half_record`), saying in one log line which pairs they are."""
    pairs = resolve_pairs(choice, dataset_name, protocol)
    chosen = select_pairs(examples, pairs, salt)
    how = "every pair" if pairs == "all" else f"the pairs whose prompt hashes (salt dataset.seed={salt}) to it"
    log.info(
        "algo=%s trains on pairs=%s: %d of %d training pairs of dataset=%s (%s; %s=%s)",
        algo, pairs, len(chosen), len(examples), dataset_name, how, PROTOCOL_KEY, str(protocol).lower(),
    )  # fmt: skip
    return chosen, half_record(chosen, pairs, salt)


def overlap_problem(judge: dict, other: dict) -> str | None:
    """Why the judge's recorded pairs (summary.json) may share pairs with another run's, or None when they are
    disjoint by construction: opposite halves of the same salt and scheme. "cannot check" where a record is missing
    or was made another way; "overlap" where either trained on all pairs or both on the same half."""
    for name, record in (("judge", judge), ("other", other)):
        if record.get("pairs") not in ("all", *HALVES) or record.get("pairs_scheme") != SCHEME:
            return f"cannot check: the {name} run records no pair half of scheme {SCHEME} (trained before it)"
    if "all" in (judge["pairs"], other["pairs"]):
        return f"overlap: the {'judge' if judge['pairs'] == 'all' else 'other'} run trained on pairs=all"
    if judge["pairs"] == other["pairs"]:
        return f"overlap: both trained on pairs={judge['pairs']}"
    if judge.get("pairs_salt") != other.get("pairs_salt"):
        return (
            f"cannot check: the halves were cut with different salts (dataset.seed={judge.get('pairs_salt')} and "
            f"{other.get('pairs_salt')})"
        )
    return None


def check_disjoint(key: str, judge_dir, judge: dict, role: str, other_dir, other: dict) -> None:
    """Refuse, in one line naming ``key``, a judge run whose pairs (``judge``: its summary.json) may overlap those of
    ``other_dir`` (``role``, e.g. "the reward model policies.ppo optimised"), or whose overlap cannot be checked."""
    problem = overlap_problem(judge, other)
    if problem is None:
        return
    raise ConfigError(
        f"{key}={judge_dir}: not independent of {role} ({other_dir}): {problem}; train both under the judge "
        f"protocol ({PROTOCOL_KEY}=true: `python train.py algo=rm {PROTOCOL_KEY}=true`, then algo=judge, "
        f"algo=dpo/sft with it) or point {key} at a judge trained on the other half"
    )
