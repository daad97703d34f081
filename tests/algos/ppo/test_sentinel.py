"""The Goodhart sentinel (rlhf/algos/ppo/sentinel.py) on a tiny PPO run: one independent reading per checkpoint,
keep_best keeps the argmax, the judge is independent and loaded without a second base, resume continues it."""

import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from rlhf.algos.ppo import checkpoint, sentinel
from rlhf.algos.ppo import loop as ppo
from rlhf.algos.ppo.loop import validation_split
from rlhf.algos.ppo.roles import ADAPTER_WEIGHTS, SCORE_KEY
from rlhf.algos.ppo.sentinel import Judge, best_reading, judge_run
from rlhf.config import ModelSettings, from_node
from rlhf.errors import ConfigError
from rlhf.experiment import run_experiment
from rlhf.modeling.models import load_reward_model
from rlhf.modeling.reward_scoring import score_conversations
from tests.algos.helpers import metric_rows, rm_outputs
from tests.algos.ppo.test_loop import ppo_overrides, setup
from tests.conftest import compose_train

ON = {"algo.sentinel_prompts": "2"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return rm_outputs(tmp_path_factory)


@pytest.fixture(scope="module")
def judge_dir(outputs, tmp_path_factory):
    """A finished reward-model run on the tiny base that is not PPO's: the rm run with other weights."""
    judge = tmp_path_factory.mktemp("judge") / "run"
    shutil.copytree((outputs / "latest" / "rm").resolve(), judge)
    path = judge / "adapter" / ADAPTER_WEIGHTS
    weights = load_file(str(path))
    generator = torch.Generator().manual_seed(0)
    for key, value in weights.items():
        if ".lora_B." in key or key == SCORE_KEY:
            weights[key] = value + 0.1 * torch.randn(value.shape, generator=generator)
    save_file(weights, str(path), metadata={"format": "pt"})
    return judge


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def reading(step, independent, proxy=0.0, kl=0.0):
    return {"step": step, "proxy_score": proxy, "independent_score": independent, "kl": kl, "judge": "gold"}


def test_best_reading_is_the_argmax_the_earliest_of_equals_and_skips_nan():
    history = [reading(1, 0.1), reading(2, 0.7), reading(3, float("nan")), reading(4, 0.7), reading(5, 0.2)]
    assert best_reading(history)["step"] == 2
    assert best_reading([reading(1, -0.5), reading(2, -0.2), reading(3, -0.9)])["step"] == 2
    assert best_reading([reading(1, float("nan"))]) is None and best_reading([]) is None


@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"algo.keep_best": "true"},
            r"^algo\.keep_best=true needs algo\.sentinel_prompts > 0 .*: set algo\.sentinel_prompts=16, "
            r"or algo\.keep_best=false$",
        ),
        ({"algo.sentinel_prompts": "-1"}, r"algo\.sentinel_prompts=-1 is out of range: must be >= 0"),
    ],
)
def test_bad_sentinel_settings_are_one_line_errors(override, message):
    cfg = compose_train(ppo_overrides(**override))
    with pytest.raises(ConfigError, match=message) as err:
        from_node(ppo.Settings, cfg.algo, "algo")
    assert "\n" not in str(err.value)


def test_the_sentinel_reads_training_prompts_the_rollouts_never_draw():
    """Its prompts are the last N training prompts, taken out of the rollouts' set; never the test prompts that
    judge the final policy (keep_best chooses by the sentinel's score)."""
    rollouts, sentinel = validation_split(list(range(10)), 3)
    assert (rollouts, sentinel) == (list(range(7)), [7, 8, 9])
    assert validation_split(list(range(10)), 0) == (list(range(10)), [])
    with pytest.raises(ConfigError, match=r"^algo\.sentinel_prompts=10 is out of range: .* 10 training prompts"):
        validation_split(list(range(10)), 10)


def test_the_default_config_leaves_the_sentinel_off():
    settings = from_node(ppo.Settings, compose_train(["algo=ppo"]).algo, "algo")
    assert (settings.sentinel_prompts, settings.sentinel_judge, settings.keep_best) == (0, "auto", False)


def test_a_judge_that_is_the_reward_model_is_refused(outputs, tmp_path):
    copy = tmp_path / "rm-copy"  # another directory, the same weights: no more independent
    shutil.copytree((outputs / "latest" / "rm").resolve(), copy)
    for judge in (outputs / "latest" / "rm", copy):
        _, job, settings = setup(outputs, tmp_path, **ON, **{"algo.sentinel_judge": str(judge)})
        with pytest.raises(ConfigError, match=r"is PPO's own reward model .* the sentinel's judge must be independent"):
            ppo.build(job, settings)


def test_auto_judge_without_a_gold_judge_needs_latest_judge(outputs, tmp_path):
    rm = SimpleNamespace(run_dir=outputs / "rm", adapter=outputs / "rm" / "adapter")
    settings = SimpleNamespace(sentinel_judge="auto")
    hh = SimpleNamespace(dataset=SimpleNamespace(name="hh_rlhf"), outputs_root=tmp_path)
    with pytest.raises(ConfigError, match=r"no gold judge .*latest/judge does not exist.*algo=judge dataset=hh_rlhf"):
        judge_run(hh, settings, rm)
    synthetic = SimpleNamespace(dataset=SimpleNamespace(name="hh_synthetic"), outputs_root=tmp_path)
    assert judge_run(synthetic, settings, rm) is None  # the gold judge


def test_the_judge_adapter_scores_as_the_judge_runs_own_model(outputs, judge_dir, tmp_path, monkeypatch):
    """On the policy's base the judge is one more adapter + head (no second base); it scores as the judge run's own
    sequence classifier (and as the separate-model fallback), and leaves the policy, the reward role and the RNG
    as they were."""
    _, job, settings = setup(outputs, tmp_path, **ON, **{"algo.sentinel_judge": str(judge_dir)})
    roles, rm = ppo.build(job, settings)
    conversations = [ex["prompt"] + ex["chosen"] for ex in job.data.test[:5]]
    prompts = [ex["prompt"] for ex in job.data.test[:5]]
    records = [{"response": ex["chosen"][0]["content"]} for ex in job.data.test[:5]]
    reward_before = roles.scores(conversations, 2, 256)
    rng = torch.get_rng_state()

    judge = Judge.load(job, settings, roles, rm)
    assert judge.name == str(judge_dir.resolve()) and "judge" in roles.roles
    assert torch.equal(torch.get_rng_state(), rng)
    assert not any(p.requires_grad for n, p in roles.roles["policy"].model.named_parameters() if ".judge." in n)
    shared = torch.tensor(judge.scores(roles, prompts, records, batch_size=2))
    tokenizer, own = load_reward_model(job.model, judge_dir / "adapter", job.hardware)
    expected = score_conversations(own, tokenizer, conversations, 2, 256)
    assert torch.allclose(shared, expected, atol=1e-5)
    assert not torch.allclose(shared, reward_before, atol=1e-3)  # really another judge than the reward model
    assert torch.equal(roles.scores(conversations, 2, 256), reward_before)

    monkeypatch.setattr(ModelSettings, "same_base", lambda self, other: False)  # as if on another base
    separate = Judge.load(job, settings, roles, rm)
    assert separate.model is not judge.model
    assert torch.allclose(torch.tensor(separate.scores(roles, prompts, records, 2)), expected, atol=1e-5)


def adapter_weights(adapter_dir):
    return load_file(str(adapter_dir / ADAPTER_WEIGHTS))


def test_keep_best_keeps_the_checkpoint_the_judge_scored_best(outputs, tmp_path, monkeypatch):
    """Three checkpoints; the judge (patched) prefers step 2: adapter/ is step 2's policy and the summary says so."""
    forced = iter([0.1, 0.9, 0.4])  # the independent score of steps 1, 2, 3
    monkeypatch.setattr(Judge, "scores", lambda self, roles, prompts, records, batch: [next(forced)] * len(records))
    run_dir = tmp_path / "ppo"
    cfg = compose_train(ppo_overrides(**ON, **{"algo.keep_best": "true", "algo.iterations": "3"}), outputs_root=outputs)
    summary = run_experiment(cfg, run_dir)

    assert summary["status"] == "finished"
    assert (summary["sentinel_best_step"], summary["sentinel_kept"]) == (2, 2)
    assert summary["sentinel_best_score"] == pytest.approx(0.9) and summary["sentinel_judge"] == "gold"
    kept = adapter_weights(run_dir / "adapter")
    step2, step3 = (adapter_weights(checkpoint.step_dir(run_dir, s) / "adapter") for s in (2, 3))
    assert kept.keys() == step2.keys() and all(torch.equal(kept[k], step2[k]) for k in kept)
    assert not all(torch.equal(kept[k], step3[k]) for k in kept)  # the last policy really was another one
    history = rows(run_dir / sentinel.SENTINEL_JSONL)
    assert [r["step"] for r in history] == [1, 2, 3]
    assert [r["independent_score"] for r in history] == pytest.approx([0.1, 0.9, 0.4])
    assert all(math.isfinite(r["proxy_score"]) and math.isfinite(r["kl"]) for r in history)
    assert (run_dir / sentinel.SENTINEL_PNG).stat().st_size > 0
    samples = [r["when"] for r in rows(run_dir / "eval_samples.jsonl")]
    assert samples == ["start"] * 4 + ["final"] * 4  # one final evaluation: the kept policy's
    assert math.isfinite(summary["rm_score_final"]) and math.isfinite(summary["gold_score_final"])


def test_resume_after_a_kill_continues_the_history(outputs, tmp_path, monkeypatch):
    """Killed while saving step 4's checkpoint (after its reading): the resumed run drops that reading, rereads
    step 4 to the same scores, and every checkpoint has one row, with finite gold scores."""
    run = {**ON, "algo.iterations": "4", "algo.save_every": "2"}
    run_dir = tmp_path / "ppo"
    real_save = checkpoint.save

    def dies_saving_step_4(run_dir, step, *args, **kwargs):
        if step == 4:
            raise RuntimeError("killed")
        return real_save(run_dir, step, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save", dies_saving_step_4)
    with pytest.raises(RuntimeError, match="killed"):
        run_experiment(compose_train(ppo_overrides(**run), outputs_root=outputs), run_dir)
    before = rows(run_dir / sentinel.SENTINEL_JSONL)
    assert [r["step"] for r in before] == [2, 4] and checkpoint.latest(run_dir).name == "step-000002"
    monkeypatch.setattr(checkpoint, "save", real_save)

    summary = run_experiment(compose_train(ppo_overrides(**run, resume=str(run_dir)), outputs_root=outputs), run_dir)
    after = rows(run_dir / sentinel.SENTINEL_JSONL)
    assert summary["status"] == "finished" and [r["step"] for r in after] == [2, 4]
    assert after[0] == before[0]  # restored from the checkpoint, not reread
    for key in ("proxy_score", "independent_score", "kl"):
        assert after[1][key] == pytest.approx(before[1][key], rel=1e-4, abs=1e-6), key
    assert all(math.isfinite(r["independent_score"]) and r["judge"] == "gold" for r in after)
    logged = [r["step"] for r in metric_rows(run_dir) if "sentinel/independent_score" in r]
    assert logged == [2, 4]  # the killed run's step-4 row was dropped with the rest after step 2
    assert summary["sentinel_kept"] == 4 and summary["sentinel_best_step"] in (2, 4)
    state = torch.load(checkpoint.step_dir(run_dir, 4) / checkpoint.STATE, weights_only=True)
    assert [r["step"] for r in state[sentinel.STATE_KEY]] == [2, 4]
