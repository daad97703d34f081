"""The dataset columns TRL's trainers read, from our preference examples (DESIGN.md contract), and which of the
job's training pairs a run trains on (rlhf/data/halves.py)."""

from __future__ import annotations

from datasets import Dataset

from rlhf.data import halves
from rlhf.run.job import Job


def job_pairs(job: Job, choice: str, algo: str) -> tuple[list[dict], dict]:
    """(the job's training pairs of ``choice`` (algo.pairs; "auto" for dpo / sft), their summary.json record): under
    ``dataset.judge_protocol`` on a dataset without a gold judge, auto is the proxy half. One log line says which."""
    d = job.dataset
    return halves.training_pairs(job.data.train, choice, d.name, d.seed, d.judge_protocol, algo)


def preference_dataset(examples: list[dict]) -> Dataset:
    """TRL's conversational preference columns (prompt, chosen, rejected); the family tag stays with us."""
    return Dataset.from_list([{k: ex[k] for k in ("prompt", "chosen", "rejected")} for ex in examples])
