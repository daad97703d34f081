"""Preference splits for training and evaluation, from any supported source.

Every source yields HH-format rows; they all go through the same parser, so the synthetic set and
real HH-RLHF files are handled identically. Unusable rows are dropped and counted per reason; the share of
them (dataset.max_bad_fraction) is judged per source file, on all of its rows, before any split.

The test split is held out for real: shuffled with ``dataset.seed`` (HH files are ordered by subset, and
evaluate.py takes the first N), and a test example whose prompt also appears in the training split is dropped
and counted (``test_prompt_in_train``), so no policy is judged on a prompt it trained on.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field

from rlhf.config import DatasetSettings
from rlhf.data.hh_rlhf import render_transcript, to_preference_example
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
) -> tuple[list[dict | None], Counter]:
    """Parse the HH rows of one source into examples, counting bad ones per reason; too many bad rows is an error.

    Returns one entry per row, ``None`` for a dropped one, so a split made afterwards puts every row where it
    would have gone without the check (the split does not depend on which rows are bad).
    """
    parsed, dropped = [], Counter()
    for row in rows:
        example, reason = to_preference_example(row["chosen"], row["rejected"])
        if example is None:
            dropped[reason] += 1
        else:
            example["family"] = row.get("family", default_family)
        parsed.append(example)
    _check_bad_share(source, len(rows), dropped, max_bad_fraction)
    return parsed, dropped


def _check_bad_share(source: str, n_rows: int, dropped: Counter, max_bad_fraction: float) -> None:
    """Fail when more than ``max_bad_fraction`` of a source's rows are unusable; log the drops otherwise."""
    bad = sum(dropped.values())
    if n_rows and bad / n_rows > max_bad_fraction:
        raise DataError(
            f"{source}: {bad} of {n_rows} rows ({bad / n_rows:.1%}) are unusable ({dict(dropped)}), more than "
            f"dataset.max_bad_fraction={max_bad_fraction}: check the file format or raise the limit"
        )
    if bad:
        log.warning("%s: dropped %d of %d rows: %s", source, bad, n_rows, dict(dropped))


def _parse_each(
    raw: dict[str, list[dict]], sources: dict[str, str], max_bad_fraction: float
) -> tuple[dict[str, list[dict | None]], Counter]:
    """Parse splits that come from separate sources, each judged on its own rows."""
    parsed, dropped = {}, Counter()
    for split in ("train", "test"):
        parsed[split], split_dropped = parse_rows(raw[split], sources[split], max_bad_fraction)
        dropped.update(split_dropped)
    return parsed, dropped


def _split(rows: list, test_fraction: float, seed: int) -> tuple[list, list]:
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_test = max(1, round(len(rows) * test_fraction))
    if n_test >= len(rows):
        raise DataError(f"{len(rows)} rows cannot be split with dataset.test_fraction={test_fraction}: give more rows")
    return [rows[i] for i in order[n_test:]], [rows[i] for i in order[:n_test]]


def _hh_splits(settings: DatasetSettings) -> tuple[dict[str, list[dict | None]], Counter, dict[str, str]]:
    """Parsed HH examples per split (``None`` for dropped rows), drop counts, and where each split came from."""
    files = settings.data_files
    if isinstance(files, str):
        if settings.test_fraction is None:
            raise DataError("one dataset.data_files file needs dataset.test_fraction to split off a test set")
        # Judged on the whole file before the split: whether a run fails must not depend on where the seed
        # happens to put a bad row (one in a 10-row test split would be 10%).
        parsed, dropped = parse_rows(read_hh_rows(files), files, settings.max_bad_fraction)
        train, test = _split(parsed, settings.test_fraction, settings.seed)
        return {"train": train, "test": test}, dropped, {"train": files, "test": files}
    if isinstance(files, dict):
        unknown = sorted(set(files) - {"train", "test"})
        if unknown or "train" not in files or "test" not in files:
            raise DataError(f"dataset.data_files={files}: the mapping needs exactly the keys 'train' and 'test'")
        raw, sources = {k: read_hh_rows(files[k]) for k in ("train", "test")}, dict(files)
    else:
        raw, sources = _hub_hh_splits(settings)
    parsed, dropped = _parse_each(raw, sources, settings.max_bad_fraction)
    return parsed, dropped, sources


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


def held_out(train: list[dict], test: list[dict], seed: int) -> tuple[list[dict], int]:
    """(the test examples shuffled with ``seed``, less those whose prompt is also a training prompt; how many
    were dropped). Prompts compare as rendered message lists (every turn, not only the last question)."""
    seen = {render_transcript(ex["prompt"]) for ex in train}
    shuffled = list(test)
    random.Random(seed).shuffle(shuffled)
    kept = [ex for ex in shuffled if render_transcript(ex["prompt"]) not in seen]
    return kept, len(shuffled) - len(kept)


def _cap(examples: list[dict], limit: int | None) -> list[dict]:
    return examples if limit is None else examples[:limit]


def load_preference_splits(settings: DatasetSettings) -> PreferenceSplits:
    """Train and test preference examples for the configured dataset."""
    if settings.name == "hh_synthetic":
        from rlhf.data.synthetic import generate

        raw = generate(settings.seed, settings.n_train, settings.n_test, settings.family_weights)
        sources = {k: f"hh_synthetic(seed={settings.seed})/{k}" for k in ("train", "test")}
        parsed, dropped = _parse_each(raw, sources, settings.max_bad_fraction)
    else:
        parsed, dropped, sources = _hh_splits(settings)
    for split in ("train", "test"):
        parsed[split] = [example for example in parsed[split] if example is not None]
        if not parsed[split]:
            raise DataError(f"{sources[split]}: no usable {split} rows after parsing")
    parsed["test"], overlap = held_out(parsed["train"], parsed["test"], settings.seed)
    if overlap:
        dropped["test_prompt_in_train"] = overlap
        log.warning("%s: dropped %d test rows whose prompt is also in the training split", sources["test"], overlap)
    if not parsed["test"]:
        raise DataError(
            f"{sources['test']}: every test prompt also appears in the training split: give other test rows"
        )
    return PreferenceSplits(
        train=_cap(parsed["train"], settings.max_train_rows),
        test=_cap(parsed["test"], settings.max_eval_rows),
        dropped=dropped,
        source=", ".join(sorted(set(sources.values()))),
    )
