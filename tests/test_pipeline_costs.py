"""Phase seconds and token counts of real tiny runs (rlhf/run/costs.py): rm, dpo and ppo through run_experiment,
evaluate.py on them, and the pipeline profile of the four directories (bench/pipeline_profile.py)."""

import json

import pytest
from transformers import get_scheduler

from bench import pipeline_profile
from rlhf.algos import dpo, rm
from rlhf.algos.ppo import loop as ppo
from rlhf.algos.ppo.math import make_kl_controller
from rlhf.algos.ppo.optimizer import build_optimizer
from rlhf.config import from_node
from rlhf.evaluation.run import evaluate
from rlhf.experiment import run_experiment
from rlhf.run import costs
from tests.algos.helpers import make_job
from tests.conftest import compose_train, tiny_overrides
from tests.evaluation.helpers import tiny_evaluate

ONE_PASS = {"dataset.n_train": "16"}  # debug=tiny trains 4 steps of 4: every pair exactly once


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """rm -> dpo -> ppo on the tiny model in one outputs root: (root, the rm and dpo trainers)."""
    root = tmp_path_factory.mktemp("pipeline")
    trainers = {}
    with pytest.MonkeyPatch.context() as patch:
        for algo, module in (("rm", rm), ("dpo", dpo)):
            real = module.run_trainer

            def keep(trainer, job, real=real, algo=algo):
                trainers[algo] = trainer
                return real(trainer, job)

            patch.setattr(module, "run_trainer", keep)
            run_experiment(compose_train(tiny_overrides(algo=algo, **ONE_PASS), outputs_root=root), root / algo)
    run_experiment(compose_train(tiny_overrides(algo="ppo"), outputs_root=root), root / "ppo")
    return root, trainers


@pytest.fixture(scope="module")
def evaluated(pipeline):
    """The pipeline's root, after evaluate.py compared base, dpo and ppo there (judge: the rm run)."""
    root, _ = pipeline
    evaluate(tiny_evaluate(root), root / "evaluate")
    return root


def summary(root, algo) -> dict:
    return json.loads((root / algo / "summary.json").read_text())


def covered_share(record: dict) -> float:
    """The share of the run's wall time its named phases cover (everything but ``other``)."""
    phases = record["phase_seconds"]
    return (sum(phases.values()) - phases["other"]) / record["wall_time_s"]


@pytest.mark.parametrize(
    "algo, phases",
    [
        ("rm", {"setup", "load_model", "prepare_data", "training", "checkpoint", "evaluation", "final_save"}),
        ("dpo", {"setup", "load_model", "prepare_data", "training", "checkpoint", "evaluation", "final_save"}),
        ("ppo", {"setup", "load_model", "generation", "scoring", "update", "evaluation", "checkpoint", "final_save"}),
    ],
)
def test_phases_cover_the_run(pipeline, algo, phases):
    root, _ = pipeline
    record = summary(root, algo)
    assert phases <= set(record["phase_seconds"])
    assert sum(record["phase_seconds"].values()) == pytest.approx(record["wall_time_s"], abs=0.05)
    assert covered_share(record) >= 0.9, record["phase_seconds"]


def test_rm_counts_the_tokens_of_the_pairs_it_trained_on(pipeline):
    root, trainers = pipeline
    pairs = trainers["rm"].train_dataset
    assert len(pairs) == 16  # one pass: each pair's chosen and rejected rows once
    expected = sum(len(pair["chosen_ids"]) + len(pair["rejected_ids"]) for pair in pairs)
    record = summary(root, "rm")
    assert record["tokens_forwarded"] == record["tokens_backpropagated"] == expected
    assert record["episodes"] == 16


def test_dpo_forwards_each_batch_again_for_the_reference(pipeline):
    root, trainers = pipeline
    trainer = trainers["dpo"]
    limit = trainer.args.max_length  # the collator cuts prompt + response to it, keeping the start
    pairs = trainer.train_dataset
    assert len(pairs) == 16
    trained = sum(
        min(len(pair["prompt_ids"]) + len(pair[side]), limit)
        for pair in pairs
        for side in ("chosen_ids", "rejected_ids")
    )
    record = summary(root, "dpo")
    assert record["tokens_backpropagated"] == trained
    assert record["tokens_forwarded"] == 2 * trained  # policy and reference
    assert record["episodes"] == 16


def test_ppo_counts_its_rollouts(pipeline):
    root, _ = pipeline
    record = summary(root, "ppo")
    assert record["episodes"] == 2 * 4  # 2 iterations of 4 prompts (conf/debug/algo/tiny_ppo.yaml)
    assert record["tokens_forwarded"] > record["tokens_backpropagated"] > 0


@pytest.mark.parametrize(
    "algo, reads",
    [
        ("grpo", 4),  # sampling, the reward model's read, the reference, the update
        ("rloo", 5),  # and TRL's RLOO forwards the old policy too (GRPO keeps the update's own at one pass)
    ],
)
def test_online_arms_count_rollouts_and_their_forwards(pipeline, algo, reads):
    root, _ = pipeline
    record = run_experiment(compose_train(tiny_overrides(algo=algo), outputs_root=root), root / algo)
    assert record["episodes"] == 4 * 4  # 4 rollouts of 4 completions (conf/debug/algo/tiny_<algo>.yaml)
    # one pass over each rollout (num_iterations=1): every forward reads the rollout's tokens once
    assert record["tokens_forwarded"] == reads * record["tokens_backpropagated"] > 0
    assert {"generation", "scoring", "training", "evaluation", "checkpoint"} <= set(record["phase_seconds"])
    assert covered_share(record) >= 0.9, record["phase_seconds"]


def test_one_ppo_iteration_counts_every_forward_and_backward(pipeline, tmp_path):
    root, _ = pipeline
    cfg = compose_train(tiny_overrides(algo="ppo"), outputs_root=root)
    job = make_job(cfg, tmp_path / "run")
    settings = from_node(ppo.Settings, cfg.algo, "algo")
    roles, _ = ppo.build(job, settings)
    optimizer = build_optimizer(roles.trainable.values(), "adamw_torch", 1e-4, 1e-5, roles.device)
    scheduler = get_scheduler("constant", optimizer, 0, 10)
    prompts = [ex["prompt"] for ex in job.data.train[:4]]
    acc = costs.reset()
    _, rollout, _ = ppo.ppo_iteration(
        roles, optimizer, scheduler, make_kl_controller(0.05, False, None, None), prompts, settings, 2, 256
    )
    sequences = int(rollout.prompt_mask.sum() + rollout.mask.sum())  # [prompt | response] tokens of the batch
    # fp32 on CPU: the rollout kept its sampling log-probs; the value adapter needs its own forward
    assert rollout.logprobs is not None and rollout.values is None and not roles.value_on_policy
    update = settings.ppo_epochs * 2 * sequences  # every row once per epoch, through the policy and the value
    assert acc.tokens_backpropagated == update
    assert acc.tokens_forwarded == sequences * (1 + 3) + update  # rollout; reference, value, reward; update
    assert acc.episodes == 4
    assert list(acc.seconds) == ["generation", "scoring", "advantages", "update"]


def test_evaluate_times_its_steps(evaluated):
    root = evaluated
    results = json.loads((root / "evaluate" / "results.json").read_text())
    phases = results["phase_seconds"]
    steps = {"setup", "load_model", "generation", "kl_logprobs", "judge_scoring", "gold_scoring", "pair_logprobs"}
    assert steps | {"report"} <= set(phases)
    assert covered_share(results) >= 0.9, phases


def test_profile_of_the_four_directories(evaluated, capsys):
    root = evaluated
    stages = pipeline_profile.main(["--dirs", *(str(root / name) for name in ("rm", "dpo", "ppo", "evaluate"))])
    assert [stage.name for stage in stages] == ["rm", "dpo", "ppo", "evaluate"]
    assert stages[0].tokens_forwarded == summary(root, "rm")["tokens_forwarded"] and stages[3].tokens_forwarded is None
    out = capsys.readouterr().out
    assert out.startswith("## Pipeline profile") and "| ppo | generation |" in out
