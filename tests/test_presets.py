"""Every experiment and sweep preset composes into a config that passes the schemas."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlhf.config import DatasetSettings, HardwareSettings, LoraSettings, ModelSettings, from_node
from rlhf.experiment import algorithm
from tests.conftest import CONF_DIR


def names(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def compose_with_hydra(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def validate(cfg):
    from_node(algorithm(cfg.algo.name).Settings, cfg.algo, "algo")
    for schema, group in (
        (ModelSettings, "model"),
        (DatasetSettings, "dataset"),
        (HardwareSettings, "hardware"),
        (LoraSettings, "lora"),
    ):
        from_node(schema, cfg[group], group)


@pytest.mark.parametrize("hardware", ["gpu_24gb", "a100_80gb"])
@pytest.mark.parametrize("experiment", names("experiment"))
def test_experiment_presets_compose_on_both_gpu_profiles(experiment, hardware):
    cfg = compose_with_hydra([f"experiment={experiment}", f"hardware={hardware}"])
    validate(cfg)
    assert cfg.model.name == "llama2_7b" and cfg.dataset.name == "hh_rlhf"
    assert cfg.algo.name == experiment.rsplit("_", 1)[-1]


def test_llama2_dpo_preset_uses_the_dpo_paper_settings():
    cfg = compose_with_hydra(["experiment=llama2_7b_hh_dpo"])
    assert (cfg.algo.beta, cfg.algo.max_length, cfg.algo.max_prompt_length) == (0.1, 512, 256)


@pytest.mark.parametrize("sweep", names("sweep"))
def test_sweep_presets_compose(sweep):
    cfg = compose_with_hydra([f"sweep={sweep}"])
    validate(cfg)
    OmegaConf.to_container(cfg.hydra.sweeper, resolve=False)
    assert str(cfg.hydra.mode).endswith("MULTIRUN")


def test_grid_preset_sweeps_beta_and_rank():
    cfg = compose_with_hydra(["sweep=dpo_beta_lora_grid"])
    assert cfg.algo.name == "dpo"
    assert dict(cfg.hydra.sweeper.params) == {"algo.beta": "0.05,0.1,0.3", "lora": "r8,r16"}


def test_llama2_ppo_preset_uses_the_n_plus_settings_from_the_sft_policy():
    cfg = compose_with_hydra(["experiment=llama2_7b_hh_ppo"])
    algo = cfg.algo
    assert (algo.kl_coef, algo.sampling.temperature, algo.ppo_epochs, algo.batch_size) == (0.05, 0.7, 4, 512)
    assert (algo.gamma, algo.lam, algo.cliprange, algo.vf_coef) == (1.0, 0.95, 0.2, 0.1)
    assert algo.init_adapter == "outputs/latest/sft" and cfg.optimized_metric == "rm_score_final"


def test_ppo_kl_grid_sweeps_the_kl_coefficient():
    cfg = compose_with_hydra(["sweep=ppo_kl_grid"])
    assert cfg.algo.name == "ppo"
    assert dict(cfg.hydra.sweeper.params) == {"algo.kl_coef": "0.01,0.05,0.1,0.2"}


def test_ppo_critic_sweep_pairs_both_critics_on_five_seeds():
    cfg = compose_with_hydra(["sweep=ppo_critic"])
    assert cfg.algo.name == "ppo" and cfg.algo.eval_prompts == 96
    assert dict(cfg.hydra.sweeper.params) == {"seed": "0,1,2,3,4", "algo.value_model": "adapter,policy"}
