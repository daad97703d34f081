"""Resolving the compared policies and the judge: skips, errors that name the bad value and the fix."""

import json
import logging

import pytest
from omegaconf import OmegaConf

from rlhf.config import ModelSettings, from_node
from rlhf.data.halves import half_record, select_pairs
from rlhf.errors import ConfigError
from rlhf.evaluation.checkpoints import policy_checkpoints
from rlhf.evaluation.policies import resolve_judge, resolve_policies, resolve_policy
from rlhf.run.rundir import point_latest, resolve_adapter, write_json_atomic
from tests.evaluation.helpers import make_policy_run, make_rm_run, tiny_evaluate


@pytest.fixture
def tiny_model(tmp_path) -> ModelSettings:
    return from_node(ModelSettings, tiny_evaluate(tmp_path).model, "model")


def test_missing_default_latest_links_are_skipped_with_a_warning(tmp_path, tiny_model, caplog):
    outputs = tmp_path / "outputs"
    cfg = tiny_evaluate(outputs)
    policies = {"base": "base", "dpo": f"{outputs}/latest/dpo", "ppo": f"{outputs}/latest/ppo"}
    assert dict(cfg.policies) == policies  # the defaults point at outputs_root/latest
    with caplog.at_level(logging.WARNING):
        specs = resolve_policies(policies, tiny_model, outputs)
    assert [s.name for s in specs] == ["base"] and specs[0].is_base
    assert "policies.dpo" in caplog.text and "algo=dpo" in caplog.text


def test_explicit_missing_latest_link_is_an_error(tmp_path, tiny_model):
    outputs = tmp_path / "outputs"
    with pytest.raises(ConfigError, match=r"policies\.dpo=.*nothing is there"):
        resolve_policies({"dpo": f"{outputs}/latest/dpo"}, tiny_model, outputs, explicit={"dpo"})


def test_null_leaves_a_policy_out_and_nothing_left_is_an_error(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="no policies to compare"):
        resolve_policies({"base": None, "dpo": None}, tiny_model, tmp_path)


def test_a_path_that_is_not_a_run_directory_is_an_error(tmp_path, tiny_model):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(
        ConfigError, match=rf"policies\.sft={plain}: not a run directory \(no summary.json\); point it at"
    ):
        resolve_policies({"sft": str(plain)}, tiny_model, tmp_path / "outputs")
    with pytest.raises(ConfigError, match=r"policies\.x=.*nothing is there"):
        resolve_policies({"x": str(tmp_path / "nope")}, tiny_model, tmp_path / "outputs")


def test_unfinished_rm_and_other_base_runs_are_refused(tmp_path, tiny_model):
    run = make_rm_run(tmp_path / "rm", with_weights=False)
    with pytest.raises(ConfigError, match=r"policies\.dpo=.*reward model run, not a policy; judge with it instead"):
        resolve_policy("dpo", str(run), tiny_model)
    other = make_policy_run(tmp_path / "other", model="smollm2_135m")
    with pytest.raises(ConfigError, match=r"trained on model=smollm2_135m, a different base.*add model=smollm2_135m"):
        resolve_policy("dpo", str(other), tiny_model)
    failed = make_policy_run(tmp_path / "failed")
    (failed / "summary.json").write_text(json.dumps({"status": "failed", "algo": "dpo"}))
    with pytest.raises(ConfigError, match="did not finish"):
        resolve_policy("dpo", str(failed), tiny_model)


def test_full_weight_runs_are_refused(tmp_path, tiny_model):
    run = make_policy_run(tmp_path / "full")
    (run / "adapter" / "adapter_config.json").unlink()
    with pytest.raises(ConfigError, match="holds full weights, not a LoRA adapter"):
        resolve_policy("dpo", str(run), tiny_model)


def test_latest_links_and_init_adapters_resolve(tmp_path, tiny_model):
    outputs = tmp_path / "outputs"
    sft = make_policy_run(outputs / "sft" / "a", algo="sft", random_b=True)
    dpo = make_policy_run(outputs / "dpo" / "b", init_adapter=sft)  # a run dir: its adapter/ is the reference
    point_latest(outputs, "dpo", dpo)
    (spec,) = resolve_policies({"dpo": f"{outputs}/latest/dpo"}, tiny_model, outputs)
    assert spec.run_dir == dpo.resolve() and spec.algo == "dpo"
    assert spec.adapter == dpo.resolve() / "adapter" and spec.reference == (sft / "adapter").resolve()
    assert resolve_policy("sft", str(sft), tiny_model).reference is None  # the base
    gone = make_policy_run(outputs / "dpo" / "c", init_adapter=tmp_path / "deleted")
    with pytest.raises(
        ConfigError,
        match=r"reference for KL and the implicit reward is gone \(algo\.init_adapter=.*deleted: nothing is there",
    ):
        resolve_policy("dpo", str(gone), tiny_model)


def test_judge_on_another_base_is_an_error(tmp_path, tiny_model):
    judge = make_rm_run(tmp_path / "rm", model="smollm2_135m", with_weights=False)
    with pytest.raises(
        ConfigError,
        match=rf"judge={judge}: that run trained on model=smollm2_135m, "
        r"a different base from model=tiny_llama; pick an rm run",
    ):
        resolve_judge(str(judge), tiny_model, tmp_path, [], "hh_synthetic", False)
    with pytest.raises(ConfigError, match=r"judge=.*latest/rm: no reward model there; train one"):
        resolve_judge("auto", tiny_model, tmp_path, [], "hh_synthetic", False)
    dpo = make_policy_run(tmp_path / "dpo")
    with pytest.raises(ConfigError, match="is a 'dpo' run, expected an 'rm' or 'judge' run"):
        resolve_judge(str(dpo), tiny_model, tmp_path, [], "hh_synthetic", False)


def make_judge_run(run_dir):
    """A finished algo=judge run (an rm run's files under the judge's name)."""
    make_rm_run(run_dir, with_weights=False)
    write_json_atomic(run_dir / "summary.json", {"status": "finished", "algo": "judge", "model": "tiny_llama"})
    return run_dir


def test_auto_judge_is_the_proxy_rm_beside_the_gold_judge_else_the_latest_judge_run(tmp_path, tiny_model):
    outputs = tmp_path / "outputs"
    point_latest(outputs, "rm", make_rm_run(outputs / "rm" / "a", with_weights=False))
    gold = resolve_judge("auto", tiny_model, outputs, [], "hh_synthetic", False)
    assert gold.run.run_dir == (outputs / "rm" / "a").resolve() and not gold.independent  # the gold judge is
    with pytest.raises(
        ConfigError,
        match=r"^judge=auto: dataset=hh_rlhf has no gold judge and .*latest/judge does not exist; train the "
        r"independent judge \(`python train.py algo=judge dataset=hh_rlhf`\) or set judge=",
    ):
        resolve_judge("auto", tiny_model, outputs, [], "hh_rlhf", False)
    point_latest(outputs, "judge", make_judge_run(outputs / "judge" / "b"))
    real = resolve_judge("auto", tiny_model, outputs, [], "hh_rlhf", False)
    assert real.run.run_dir == (outputs / "judge" / "b").resolve() and real.independent and real.proxy_of == []


def ppo_trained_against(run_dir, reward_model) -> str:
    """A finished PPO run whose config names ``reward_model`` (as train.py saves it) and no summary record of it."""
    make_policy_run(run_dir, algo="ppo")
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    config.algo.reward_model = str(reward_model)
    OmegaConf.save(config, run_dir / ".hydra" / "config.yaml")
    return str(run_dir)


def test_a_judge_that_a_compared_ppo_run_optimised_is_refused_unless_allowed(tmp_path, tiny_model):
    outputs = tmp_path / "outputs"
    rm = make_rm_run(outputs / "rm" / "a", with_weights=False)
    point_latest(outputs, "rm", rm)
    other = make_rm_run(outputs / "rm" / "b", with_weights=False)
    policies = {
        "ppo": ppo_trained_against(outputs / "ppo" / "p", outputs / "latest" / "rm"),  # the link resolves to rm
        "grpo": make_policy_run(outputs / "grpo" / "g", algo="grpo"),
    }
    grpo_summary = {"status": "finished", "algo": "grpo", "model": "tiny_llama", "reward_model": str(other)}
    write_json_atomic(policies["grpo"] / "summary.json", grpo_summary)  # what train.py records
    specs = resolve_policies({k: str(v) for k, v in policies.items()}, tiny_model, outputs)

    with pytest.raises(ConfigError) as caught:
        resolve_judge(str(rm), tiny_model, outputs, specs, "hh_rlhf", False)
    message = str(caught.value)
    assert message.startswith(f"judge={rm}: {rm.resolve()} is the reward model policies.ppo=")
    assert str((outputs / "ppo" / "p").resolve()) in message and "evaluation.allow_proxy_judge=true" in message
    assert "\n" not in message

    allowed = resolve_judge(str(rm), tiny_model, outputs, specs, "hh_rlhf", True)
    assert allowed.proxy_of == ["ppo"] and not allowed.independent
    assert resolve_judge(str(other), tiny_model, outputs, specs, "hh_rlhf", True).proxy_of == ["grpo"]
    beside_gold = resolve_judge("auto", tiny_model, outputs, specs, "hh_synthetic", False)  # recorded, not refused
    assert beside_gold.run.run_dir == rm.resolve() and beside_gold.proxy_of == ["ppo"]


def test_checkpoints_of_either_layout_skip_the_final_one(tmp_path, tiny_model):
    """PPO's step-N/adapter/ (final: summary's iterations) and the Trainer's checkpoint-N/ (final: at max_steps)."""
    ppo = make_policy_run(tmp_path / "ppo", algo="ppo")
    (ppo / "summary.json").write_text(json.dumps({"status": "finished", "algo": "ppo", "iterations": 8}))
    dpo = make_policy_run(tmp_path / "dpo", algo="dpo")
    for run, folders in (
        (ppo, ["step-000004/adapter", "step-000008/adapter"]),
        (dpo, ["checkpoint-2", "checkpoint-4"]),
    ):
        for i, folder in enumerate(folders):
            make_policy_run(tmp_path / "tmp" / run.name / str(i))
            (run / "checkpoints" / folder).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "tmp" / run.name / str(i) / "adapter").rename(run / "checkpoints" / folder)
    (ppo / "checkpoints" / "step-000004" / "costs.json").write_text(json.dumps({"episodes": 16}))
    for step in (2, 4):
        state = {"global_step": step, "max_steps": 4}
        (dpo / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(state))
    (ppo / "checkpoints" / "step-000006").mkdir()  # no adapter: not a checkpoint to score

    spec = resolve_policy("ppo", str(ppo), tiny_model)
    [kept] = policy_checkpoints(spec.run_dir, spec.summary)
    assert (kept.step, kept.adapter, kept.cost) == (4, ppo.resolve() / "checkpoints" / "step-000004" / "adapter",
                                                   {"episodes": 16})  # fmt: skip
    spec = resolve_policy("dpo", str(dpo), tiny_model)
    assert [(c.step, c.adapter, c.cost) for c in policy_checkpoints(spec.run_dir, spec.summary)] == [
        (2, dpo.resolve() / "checkpoints" / "checkpoint-2", None)
    ]


def test_policy_names_and_values_are_checked(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match=r"policies\.beta0=\{'1': 'x'\}: give 'base', a run directory or null"):
        resolve_policies({"beta0": {"1": "x"}}, tiny_model, tmp_path)
    with pytest.raises(ConfigError, match="use letters, digits"):
        resolve_policies({"a b": "base"}, tiny_model, tmp_path)


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_online_arm_runs_are_policies_and_init_adapters(tmp_path, tiny_model, algo):
    run = make_policy_run(tmp_path / algo, algo=algo, random_b=True)
    spec = resolve_policy(algo, str(run), tiny_model)
    assert spec.algo == algo and spec.adapter == run.resolve() / "adapter" and spec.reference is None
    assert resolve_adapter(str(run), "algo.init_adapter", tiny_model) == run / "adapter"  # e.g. DPO from a GRPO run


def _record(run_dir, rows, half):
    """Write into run_dir's summary.json the pair record train.py keeps (rlhf/data/halves.py)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    write_json_atomic(run_dir / "summary.json", {**summary, **half_record(rows, half, 0)})
    return run_dir


def test_a_judge_on_999_of_the_proxys_1000_rows_is_accepted_and_one_on_all_pairs_refused(tmp_path, tiny_model):
    # issue 39's acceptance: halves by prompt content are disjoint whatever rows surround them
    rows = [
        {"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [{"role": "assistant", "content": f"c{i}"}],
         "rejected": [{"role": "assistant", "content": f"r{i}"}]}
        for i in range(1000)
    ]  # fmt: skip
    outputs = tmp_path / "outputs"
    rm = _record(
        make_rm_run(outputs / "rm" / "a", with_weights=False), select_pairs(rows, "proxy_half", 0), "proxy_half"
    )
    dpo = _record(make_policy_run(outputs / "dpo" / "d"), select_pairs(rows, "proxy_half", 0), "proxy_half")
    ppo = make_policy_run(outputs / "ppo" / "p", algo="ppo")
    write_json_atomic(
        ppo / "summary.json", {"status": "finished", "algo": "ppo", "model": "tiny_llama", "reward_model": str(rm)}
    )
    specs = resolve_policies({"dpo": str(dpo), "ppo": str(ppo)}, tiny_model, outputs)
    judge = _record(make_judge_run(outputs / "judge" / "b"), select_pairs(rows[:999], "judge_half", 0), "judge_half")
    accepted = resolve_judge(str(judge), tiny_model, outputs, specs, "hh_rlhf", False)
    assert accepted.independent and accepted.proxy_of == []

    everything = _record(make_judge_run(outputs / "judge" / "all"), rows, "all")  # algo=judge algo.pairs=all
    with pytest.raises(ConfigError) as caught:
        resolve_judge(str(everything), tiny_model, outputs, specs, "hh_rlhf", False)
    message = str(caught.value)
    assert message.startswith(f"judge={everything}: not independent of policies.dpo")
    assert "overlap: the judge run trained on pairs=all" in message and "\n" not in message
    unrecorded = make_judge_run(outputs / "judge" / "old")  # trained before the record existed: cannot be checked
    with pytest.raises(ConfigError, match=r"cannot check: the judge run records no pair half"):
        resolve_judge(str(unrecorded), tiny_model, outputs, specs, "hh_rlhf", False)
    assert resolve_judge(str(everything), tiny_model, outputs, specs, "hh_synthetic", False)  # the gold judge judges
