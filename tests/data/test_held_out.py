"""The test split is held out for real: shuffled with dataset.seed, and no test prompt is a training prompt."""

import json

from rlhf.config import DatasetSettings, from_node
from rlhf.data.hh_rlhf import render_transcript
from rlhf.data.preference import load_preference_splits
from tests.conftest import compose_train


def transcript(turns: list[str], reply: str) -> str:
    roles = ["user", "assistant"] * len(turns)
    return render_transcript([{"role": r, "content": t} for r, t in zip(roles, turns)]) + f"\n\nAssistant: {reply}"


def row(*turns: str) -> dict:
    return {"chosen": transcript(list(turns), "Gladly."), "rejected": transcript(list(turns), "No.")}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def settings(files, seed=0) -> DatasetSettings:
    return DatasetSettings(
        name="hh_rlhf", seed=seed, n_train=None, n_test=None, family_weights=None, subset=None, data_files=files,
        test_fraction=None, max_train_rows=None, max_eval_rows=None, max_bad_fraction=0.05, max_steps={},
        judge_protocol=False,
    )  # fmt: skip


def questions(examples) -> list[str]:
    return [ex["prompt"][-1]["content"] for ex in examples]


def test_test_prompts_seen_in_training_are_dropped_and_counted(tmp_path):
    train = [row(f"Question {i}?") for i in range(20)]
    # 5 exact repeats of training prompts (dropped), then 25 new ones; a training question after a different
    # earlier exchange is another prompt (kept): the whole message list is compared.
    test = [row(f"Question {i}?") for i in range(5)] + [row(f"Other {i}?") for i in range(25)]
    test.append(row("Hi!", "Hello!", "Question 0?"))
    files = {"train": write(tmp_path / "train.jsonl", train), "test": write(tmp_path / "test.jsonl", test)}
    splits = load_preference_splits(settings(files))
    assert splits.dropped == {"test_prompt_in_train": 5}
    assert len(splits.test) == 26 and len(splits.train) == 20
    assert not set(questions(splits.test)) & {f"Question {i}?" for i in range(1, 5)}
    assert sum(len(ex["prompt"]) == 3 for ex in splits.test) == 1


def test_the_test_split_is_shuffled_with_the_dataset_seed(tmp_path):
    files = {
        "train": write(tmp_path / "train.jsonl", [row(f"Train {i}?") for i in range(10)]),
        "test": write(tmp_path / "test.jsonl", [row(f"Test {i:02d}?") for i in range(40)]),
    }
    in_file_order = [f"Test {i:02d}?" for i in range(40)]
    first = questions(load_preference_splits(settings(files, seed=0)).test)
    assert sorted(first) == in_file_order and first != in_file_order  # every row, not the file's order
    assert questions(load_preference_splits(settings(files, seed=0)).test) == first
    assert questions(load_preference_splits(settings(files, seed=1)).test) != first


def test_the_synthetic_set_makes_256_held_out_prompts_none_seen_in_training():
    dataset = from_node(DatasetSettings, compose_train().dataset, "dataset")
    assert (dataset.n_train, dataset.n_test) == (1200, 256)
    splits = load_preference_splits(dataset)
    assert (len(splits.train), len(splits.test)) == (1200, 256) and not splits.dropped
