"""Every option of every config group composes and passes its schema; bad values give ConfigError."""

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from rlhf.config import (
    DatasetSettings,
    HardwareSettings,
    LoggerSettings,
    LoraSettings,
    ModelSettings,
    from_node,
)
from rlhf.errors import ConfigError
from rlhf.experiment import ALGORITHMS, algorithm, run_experiment
from rlhf.modeling.generation import Sampling
from tests.conftest import CONF_DIR, compose_train

SCHEMAS = {
    "model": ModelSettings,
    "lora": LoraSettings,
    "dataset": DatasetSettings,
    "hardware": HardwareSettings,
    "logger": LoggerSettings,
}


def options(group):
    """The selectable options of a group: its YAML files (the shared bases are in conf/_bases/, no group)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group, option", [(g, o) for g in [*SCHEMAS, "algo"] for o in options(g)])
def test_every_option_composes_and_validates(group, option):
    cfg = compose_train([f"{group}={option}"])
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    schema = algorithm(cfg.algo.name).Settings if group == "algo" else SCHEMAS[group]
    settings = from_node(schema, cfg[group], group)
    assert settings.name == option


@pytest.mark.parametrize("group, base", [("algo", "_trainer"), ("model", "_base"), ("hardware", "_base")])
def test_internal_bases_are_neither_options_nor_listed(group, base):
    # algo=_trainer composed and failed with an OmegaConf traceback (MissingMandatoryValue: algo.name), and a typo's
    # message offered _trainer and _base as options
    for choice in (base, f"{base}x"):
        with pytest.raises(MissingConfigException) as refused:
            compose_train([f"{group}={choice}"])
        listed = str(refused.value).split(f"Available options in '{group}':")[1].split("Config search path")[0].split()
        assert listed == options(group) and not any(o.startswith("_") for o in listed)


def test_every_algo_config_is_dispatchable():
    assert set(options("algo")) == set(ALGORITHMS)


@pytest.mark.parametrize("algo", options("algo"))
def test_debug_tiny_shrinks_every_algorithm(algo):
    # Every algorithm has its few-step shrink: `optional` in train.yaml's defaults would skip a missing one silently.
    assert (CONF_DIR / "debug" / "algo" / f"tiny_{algo}.yaml").is_file()
    cfg = compose_train(["debug=tiny", f"algo={algo}"])
    from_node(algorithm(algo).Settings, cfg.algo, "algo")
    assert (cfg.model.name, cfg.logger.name, cfg.dataset.n_train, cfg.dataset.n_test) == ("tiny_llama", "none", 32, 16)
    steps = cfg.algo.iterations if algo == "ppo" else cfg.algo.max_steps
    assert steps <= 4 and cfg.algo.batch_size == 4


def test_debug_tiny_composes_for_evaluate():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=["debug=tiny"])
    assert (cfg.model.name, cfg.logger.name, cfg.dataset.n_train, cfg.dataset.n_test) == ("tiny_llama", "none", 32, 16)


def test_headline_combination_resolves():
    cfg = compose_train(["model=llama2_7b", "dataset=hh_rlhf", "hardware=gpu_24gb"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["model"]["name_or_path"] == "meta-llama/Llama-2-7b-hf"
    assert resolved["hardware"]["load_in_4bit"] is True


def lora(**changes):
    values = dict(name="r16", r=16, alpha=32.0, dropout=0.05, target_modules=["q_proj"])
    values.update(changes)
    return values


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"r": 0}, r"lora\.r=0 is out of range: the LoRA rank must be >= 1"),
        ({"dropout": 1.5}, r"lora\.dropout=1\.5 is out of range"),
        ({"target_modules": []}, r"lora\.target_modules=\[\] is out of range"),
        ({"r": "big"}, r"lora\.r='big' has the wrong type"),
        ({"rank": 4}, r"unknown key lora\.rank: valid keys of 'lora' are"),
    ],
)
def test_bad_lora_values_name_the_value_and_fix(changes, message):
    with pytest.raises(ConfigError, match=message):
        from_node(LoraSettings, lora(**changes), "lora")


def test_missing_key_is_named():
    values = lora()
    del values["alpha"]
    with pytest.raises(ConfigError, match=r"lora\.alpha is missing"):
        from_node(LoraSettings, values, "lora")


def test_ints_become_floats_in_float_fields():
    # lora.alpha is ``float | None``: YAML's 32 must arrive as 32.0 (an int 32 would pass ``== 32.0``).
    alpha = from_node(LoraSettings, lora(alpha=32), "lora").alpha
    assert type(alpha) is float and alpha == 32.0


def test_nested_nodes_are_parsed_and_named_in_errors():
    node = {"max_prompt_length": 64, "max_new_tokens": 8, "temperature": 1, "top_k": 0, "top_p": 1}
    sampling = from_node(Sampling, node, "algo.sampling")
    assert type(sampling.temperature) is float and type(sampling.top_p) is float
    with pytest.raises(ConfigError, match=r"unknown key algo\.sampling\.temp: valid keys"):
        from_node(Sampling, {**node, "temp": 1.0}, "algo.sampling")
    with pytest.raises(ConfigError, match=r"algo\.sampling\.temperature=0\.0 is out of range"):
        from_node(Sampling, {**node, "temperature": 0}, "algo.sampling").check("algo.sampling")


def test_out_of_range_algo_hyperparameter():
    cfg = compose_train(["algo.learning_rate=-1"])
    with pytest.raises(ConfigError, match=r"algo\.learning_rate=-1\.0 is out of range"):
        from_node(algorithm("rm").Settings, cfg.algo, "algo")


@pytest.mark.parametrize("algo", ["rm", "dpo", "ppo", "grpo", "rloo"])
def test_an_empty_init_adapter_is_refused_not_read_as_the_base(algo):
    """``algo.init_adapter=`` (empty) would silently start from the base; every algorithm that takes one says so."""
    cfg = compose_train([f"algo={algo}", "algo.init_adapter=''"])
    with pytest.raises(ConfigError, match=r"algo\.init_adapter='' is out of range: give a run or adapter directory"):
        from_node(algorithm(algo).Settings, cfg.algo, "algo")
    assert from_node(algorithm(algo).Settings, compose_train([f"algo={algo}"]).algo, "algo").init_adapter is None


def test_unknown_algorithm_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown algo='nope': valid algorithms are .*rm"):
        algorithm("nope")


def test_batch_must_split_into_micro_batches():
    hardware = from_node(HardwareSettings, compose_train(["hardware.micro_batch_size=3"]).hardware, "hardware")
    assert hardware.accumulation_steps(12, "algo.batch_size") == (3, 4)
    assert hardware.accumulation_steps(2, "algo.batch_size") == (2, 1)
    with pytest.raises(ConfigError, match=r"algo\.batch_size=8 is not divisible by hardware\.micro_batch_size=3"):
        hardware.accumulation_steps(8, "algo.batch_size")


@pytest.mark.parametrize("config_name,subdir", [("train", "rm"), ("evaluate", "evaluate")])
def test_run_directories_go_under_outputs_root(tmp_path, config_name, subdir):
    """outputs_root moves the runs themselves, not only the latest/ links that point at them."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=[f"outputs_root={tmp_path}"], return_hydra_config=True)
    run_dir = Path(OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"])
    assert run_dir.parent == tmp_path / subdir


def build_job_must_not_run(*args, **kwargs):
    raise AssertionError("the model and data started to load before the config was checked")


@pytest.mark.parametrize(
    "override, message",
    [
        ("seed=-1", "seed=-1 is out of range: must be an integer from 0 to 4294967295"),  # numpy's ValueError
        ("seed=4294967296", "seed=4294967296 is out of range"),
        # top-level typos finished with exit 0, the value ignored
        ("+max_nonfinite_update=1", "unknown key max_nonfinite_update: did you mean max_nonfinite_updates?"),
        ("+unknown_key=1", "unknown key unknown_key: valid top-level keys are algo, dataset, hardware, logger, lora,"),
    ],
)
def test_top_level_values_are_checked_before_anything_loads(tmp_path, monkeypatch, override, message):
    monkeypatch.setattr("rlhf.experiment.build_job", build_job_must_not_run)
    cfg = compose_train(["debug=tiny", override], outputs_root=tmp_path / "outputs")
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_experiment(cfg, tmp_path / "run")
