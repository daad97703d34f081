"""Shared fixtures: compose the real Hydra config and shrink it; a hermetic model cache; W&B off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
HH_SAMPLE = REPO.parent / "shared" / "data" / "hh-rlhf-sample" / "harmless-base-test-first200.jsonl.gz"

# Tests never talk to W&B servers; a test that checks W&B sets its own mode.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """One model cache per test session (the tiny model is built once, from the SmolLM2 tokenizer)."""
    cache = tmp_path_factory.mktemp("model-cache")
    previous = os.environ.get("RLHF_CACHE_DIR")
    os.environ["RLHF_CACHE_DIR"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("RLHF_CACHE_DIR", None)
    else:
        os.environ["RLHF_CACHE_DIR"] = previous


def compose_config(
    config_name: str, overrides: list[str] | None = None, outputs_root: Path | None = None
) -> DictConfig:
    """conf/<config_name>.yaml composed as its entry point would, with overrides; outputs under ``outputs_root``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides or []))
    if outputs_root is not None:
        with open_dict(cfg):
            cfg.outputs_root = str(outputs_root)
    return cfg


def compose_train(overrides: list[str] | None = None, outputs_root: Path | None = None) -> DictConfig:
    """conf/train.yaml composed as train.py would."""
    return compose_config("train", overrides, outputs_root)


def as_overrides(base: dict[str, str], extra: dict[str, str]) -> list[str]:
    """``key=value`` overrides from defaults and the test's changes to them."""
    return [f"{k}={v}" for k, v in {**base, **extra}.items()]


def tiny_overrides(**extra: str) -> list[str]:
    """A shrunk default run (conf/debug/tiny.yaml): tiny model, small synthetic set, no W&B, a few steps."""
    return ["debug=tiny", *as_overrides({}, extra)]


@pytest.fixture
def hh_sample() -> Path:
    if not HH_SAMPLE.is_file():
        pytest.skip("the HH-RLHF sample in ../shared is not present")
    return HH_SAMPLE
