"""W&B runs that stay whole, on real tiny runs with W&B offline: a preset's tags reach the config, a run is named
after its overrides and logs its adapter as a model artifact, evaluate.py names the artifacts it compared, and a
killed and resumed run is one W&B run."""

import json
import os
import signal
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from rlhf.evaluation.run import evaluate
from rlhf.experiment import RunContext, run_experiment
from rlhf.run.rundir import write_json_atomic
from rlhf.run.tracking import WANDB_RUN
from tests.conftest import CONF_DIR, REPO, compose_train
from tests.evaluation.helpers import make_rm_run, tiny_evaluate
from tests.run.wandb_files import artifacts, config, offline_runs, run_record

# As train.py would see them: W&B offline into the run directory (debug=tiny alone turns it off).
WANDB_OFFLINE = ["debug=tiny", "logger=wandb", "logger.mode=offline"]
STEPS = ["algo.max_steps=6", "algo.save_every=2", "dataset.n_train=24"]


@pytest.fixture(scope="module")
def wandb_env(tmp_path_factory):
    """No W&B key or mode from the environment (conftest disables W&B); W&B's own files under a tmp dir."""
    home = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
            patch.delenv(name, raising=False)
        patch.setenv("NETRC", str(home / "no-netrc"))
        for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            patch.setenv(name, str(home / name.lower()))
        yield dict(os.environ)
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        wandb.teardown()  # the next test module starts from a clean W&B


def flat(node: dict, prefix: str = "") -> dict:
    if not isinstance(node, dict) or not node:
        return {prefix.rstrip("."): node}
    return {k: v for key, value in node.items() for k, v in flat(value, f"{prefix}{key}.").items()}


def preset_values(group: str, name: str) -> dict:
    """Every value a preset sets, unresolved (its defaults list and Hydra's settings aside)."""
    preset = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{name}.yaml"), resolve=False)
    return {k: v for k, v in flat(preset).items() if not k.startswith(("defaults", "hydra"))}


PRESETS = [(g, p.stem) for g in ("experiment", "sweep") for p in sorted((CONF_DIR / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "name"), PRESETS, ids=[f"{g}={n}" for g, n in PRESETS])
def test_every_value_a_preset_sets_survives_composition(group, name):
    composed = flat(OmegaConf.to_container(compose_train([f"{group}={name}"]), resolve=False))
    expected = preset_values(group, name)
    assert {k: composed.get(k) for k in expected} == expected
    if group == "experiment":
        assert composed["tags"] == ["llama2_7b", "hh_rlhf", name.rsplit("_", 1)[1]]


# experiment=llama2_7b_hh_rm scaled down to a tiny run on this machine: only its tags matter here.
PRESET_AT_TINY_SCALE = [
    "experiment=llama2_7b_hh_rm", "model=tiny_llama", "dataset=hh_synthetic", "hardware=cpu", "lora=r8",
    "logger=wandb", "logger.mode=offline", "dataset.n_train=16", "dataset.n_test=8",
    "algo.max_steps=2", "algo.batch_size=4", "algo.max_length=256", "algo.eval_batch_size=8",
]  # fmt: skip


def test_a_presets_tags_reach_the_wandb_run(tmp_path, wandb_env, model_cache):
    cfg = compose_train(PRESET_AT_TINY_SCALE, outputs_root=tmp_path / "outputs")
    context = RunContext(run_dir=tmp_path / "run", override_tags=PRESET_AT_TINY_SCALE, overrides=PRESET_AT_TINY_SCALE)
    assert run_experiment(cfg, context)["status"] == "finished"
    [folder] = offline_runs(tmp_path / "run")
    assert list(run_record(folder).tags)[:3] == ["llama2_7b", "hh_rlhf", "rm"]  # the offline run file's tags


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, wandb_env, model_cache):
    """A finished tiny sft run with W&B offline, overridden on the command line as a user would."""
    root = tmp_path_factory.mktemp("sft")
    overrides = ["algo=sft", *WANDB_OFFLINE, "algo.learning_rate=0.001", f"outputs_root={root / 'outputs'}"]
    cfg = compose_train(overrides)
    context = RunContext(run_dir=root / "run", override_tags=overrides, overrides=overrides)
    return root / "run", run_experiment(cfg, context)


def test_a_run_is_named_after_its_overrides_and_logs_its_adapter_as_a_model(sft_run):
    run_dir, summary = sft_run
    wandb_id = json.loads((run_dir / WANDB_RUN).read_text())["id"]
    [folder] = offline_runs(run_dir)
    assert folder.name.endswith(f"-{wandb_id}")
    record = run_record(folder)
    assert record.display_name == "sft debug=tiny algo.learning_rate=0.001"
    assert list(record.tags) == ["algo=sft", "debug=tiny", "algo.learning_rate=0.001"]
    assert summary["status"] == "finished" and summary["wandb_artifact"] == f"sft-{wandb_id}"
    [artifact] = artifacts(folder)
    assert (artifact.name, artifact.type) == (f"sft-{wandb_id}", "model")
    files = {entry.path for entry in artifact.manifest.contents}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert artifact.metadata and json.loads(artifact.metadata)["algo"] == "sft"


def test_an_evaluation_names_the_model_artifacts_it_compared(sft_run, tmp_path, wandb_env):
    run_dir, summary = sft_run
    judge = make_rm_run(tmp_path / "rm")
    judge_summary = json.loads((judge / "summary.json").read_text())
    write_json_atomic(judge / "summary.json", {**judge_summary, "wandb_artifact": "rm-judge1"})
    cfg = tiny_evaluate(
        tmp_path / "outputs",
        judge=str(judge),
        logger="wandb",
        **{"logger.mode": "offline", "evaluation.greedy": "true", "evaluation.n_pairs": "0"},
    )
    cfg.policies = {"base": "base", "sft": str(run_dir)}
    results = evaluate(cfg, tmp_path / "eval")
    expected = {"policies": {"sft": summary["wandb_artifact"]}, "judge": "rm-judge1"}
    assert results["wandb_artifacts"] == expected
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["wandb_artifacts"] == expected
    [folder] = offline_runs(tmp_path / "eval")
    assert config(folder)["compared_artifacts"] == expected  # offline W&B cannot look artifacts up: named here


def train(args: list[str], env: dict, at: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python train.py args``; with ``at`` (signal, step), through tests/signal_at_step.py."""
    command = ["tests/signal_at_step.py", *at] if at else ["train.py"]
    return subprocess.run(
        [sys.executable, *command, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_killed_and_resumed_run_is_one_wandb_run(tmp_path, wandb_env):
    run_dir = tmp_path / "killed"
    args = ["algo=rm", *WANDB_OFFLINE, *STEPS, f"outputs_root={tmp_path / 'outputs'}", f"hydra.run.dir={run_dir}"]
    killed = train(args, wandb_env, at=("SIGKILL", "3"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (run_dir / "summary.json").exists()
    wandb_id = json.loads((run_dir / WANDB_RUN).read_text())["id"]  # saved when the run started

    resumed = train([f"resume={run_dir}"], wandb_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    folders = offline_runs(run_dir)
    assert len(folders) == 2 and {f.name.split("-")[3] for f in folders} == {wandb_id}
    # The killed run's file may hold no record: wandb's core buffers its writes and SIGKILL loses them.
    record = run_record(folders[1])
    assert record.run_id == wandb_id and record.display_name == " ".join(["rm", "debug=tiny", *STEPS])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed"] is True and summary["wandb_artifact"] == f"rm-{wandb_id}"
