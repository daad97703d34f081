"""The dataset columns TRL's trainers read, from our preference examples (DESIGN.md contract)."""

from __future__ import annotations

from datasets import Dataset


def preference_dataset(examples: list[dict]) -> Dataset:
    """TRL's conversational preference columns (prompt, chosen, rejected); the family tag stays with us."""
    return Dataset.from_list([{k: ex[k] for k in ("prompt", "chosen", "rejected")} for ex in examples])
