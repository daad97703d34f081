"""Preference splits for training and evaluation, from any supported source.

Every source yields HH-format rows; they all go through the same parser, so the synthetic set and
real HH-RLHF files are handled identically. Unusable rows are dropped and counted per reason.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field

from rlhf.config import DatasetSettings
from rlhf.data.hh_rlhf import to_preference_example
from rlhf.data.jsonl import read_hh_rows
from rlhf.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class PreferenceSplits:
    """Examples ``{"prompt", "chosen", "rejected", "family"}`` (DESIGN.md contract plus a family tag)."""

    train: list[dict]
    test: list[dict]
    dropped: Counter = field(default_factory=Counter)
    source: str = ""

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())


def parse_rows(
    rows: list[dict], source: str, max_bad_fraction: float, default_family: str = "hh"
) -> tuple[list[dict], Counter]:
    """Parse HH rows into examples, dropping and counting bad ones; too many bad rows is an error."""
    examples, dropped = [], Counter()
    for row in rows:
        example, reason = to_preference_example(row["chosen"], row["rejected"])
        if example is None:
            dropped[reason] += 1
            continue
        example["family"] = row.get("family", default_family)
        examples.append(example)
    bad = sum(dropped.values())
    if rows and bad / len(rows) > max_bad_fraction:
        raise DataError(
            f"{source}: {bad} of {len(rows)} rows are unusable ({dict(dropped)}), more than "
            f"dataset.max_bad_fraction={max_bad_fraction}: check the file format or raise the limit"
        )
    if bad:
        log.warning("%s: dropped %d of %d rows: %s", source, bad, len(rows), dict(dropped))
    return examples, dropped


def _split(rows: list[dict], test_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_test = max(1, round(len(rows) * test_fraction))
    if n_test >= len(rows):
        raise DataError(f"{len(rows)} rows cannot be split with dataset.test_fraction={test_fraction}: give more rows")
    return [rows[i] for i in order[n_test:]], [rows[i] for i in order[:n_test]]


def _raw_hh_splits(settings: DatasetSettings) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """HH rows per split and a description of where each came from."""
    files = settings.data_files
    if isinstance(files, str):
        if settings.test_fraction is None:
            raise DataError("one dataset.data_files file needs dataset.test_fraction to split off a test set")
        train, test = _split(read_hh_rows(files), settings.test_fraction, settings.seed)
        return {"train": train, "test": test}, {"train": files, "test": files}
    if isinstance(files, dict):
        unknown = sorted(set(files) - {"train", "test"})
        if unknown or "train" not in files or "test" not in files:
            raise DataError(f"dataset.data_files={files}: the mapping needs exactly the keys 'train' and 'test'")
        return {k: read_hh_rows(files[k]) for k in ("train", "test")}, dict(files)
    return _hub_hh_splits(settings)


def _hub_hh_splits(settings: DatasetSettings) -> tuple[dict[str, list[dict]], dict[str, str]]:
    import datasets

    name = f"Anthropic/hh-rlhf ({settings.subset or 'all subsets'})"
    try:
        loaded = datasets.load_dataset("Anthropic/hh-rlhf", data_dir=settings.subset)
    except Exception as err:  # the hub raises many types (ConnectionError, FileNotFoundError, HfHubHTTPError)
        raise DataError(
            f"could not load {name} from the Hugging Face hub ({type(err).__name__}): without hub access download "
            f"its train.jsonl.gz and test.jsonl.gz and set dataset.data_files={{train: PATH, test: PATH}}"
        ) from None
    return {k: list(loaded[k]) for k in ("train", "test")}, {k: f"{name}/{k}" for k in ("train", "test")}


def _cap(examples: list[dict], limit: int | None) -> list[dict]:
    return examples if limit is None else examples[:limit]


def load_preference_splits(settings: DatasetSettings) -> PreferenceSplits:
    """Train and test preference examples for the configured dataset."""
    if settings.name == "hh_synthetic":
        from rlhf.data.synthetic import generate

        raw = generate(settings.seed, settings.n_train, settings.n_test, settings.family_weights)
        sources = {k: f"hh_synthetic(seed={settings.seed})/{k}" for k in ("train", "test")}
    else:
        raw, sources = _raw_hh_splits(settings)
    dropped: Counter = Counter()
    parsed = {}
    for split in ("train", "test"):
        parsed[split], split_dropped = parse_rows(raw[split], sources[split], settings.max_bad_fraction)
        dropped.update(split_dropped)
        if not parsed[split]:
            raise DataError(f"{sources[split]}: no usable {split} rows after parsing")
    return PreferenceSplits(
        train=_cap(parsed["train"], settings.max_train_rows),
        test=_cap(parsed["test"], settings.max_eval_rows),
        dropped=dropped,
        source=", ".join(sorted(set(sources.values()))),
    )
