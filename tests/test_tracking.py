"""metrics.jsonl always; W&B offline into the run dir; W&B failures never stop a run; no secrets logged."""

import dataclasses
import json
import sys

from rlhf.config import LoggerSettings
from rlhf.tracking import Tracker, redact_secrets, wandb_mode

WANDB = LoggerSettings(name="wandb", project="rlhf-tests", entity=None, group=None, mode=None)


def test_metrics_jsonl_gets_one_object_per_step(tmp_path):
    tracker = Tracker(tmp_path, LoggerSettings("none", None, None, None, "disabled"), config={}, job_type="rm", group="g", tags=[])
    tracker.log({"loss": 0.5}, step=1)
    tracker.log({"loss": float("nan")}, step=2)
    tracker.finish()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": "nan"}]


def test_mode_is_offline_without_a_key_and_online_with_one(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode(WANDB) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode(WANDB) == "online"
    assert wandb_mode(LoggerSettings("none", None, None, None, "disabled")) == "disabled"


def test_offline_run_writes_into_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    tracker = Tracker(tmp_path, WANDB, config={"a": 1}, job_type="rm", group="g", tags=["t"])
    assert tracker.wandb_run is not None
    tracker.log({"loss": 1.0}, step=1)
    tracker.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_wandb_failing_to_import_or_init_keeps_local_logging(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    tracker = Tracker(tmp_path, dataclasses.replace(WANDB, mode="offline"), config={}, job_type="rm", group="g", tags=[])
    assert tracker.wandb_run is None
    tracker.log({"loss": 1.0}, step=3)
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 3, "loss": 1.0}


def test_secrets_are_redacted_from_logged_config():
    config = {"logger": {"api_key": "abc", "project": "p"}, "hub_token": "hf_x", "nested": [{"password": "pw"}]}
    assert redact_secrets(config) == {
        "logger": {"api_key": "<redacted>", "project": "p"},
        "hub_token": "<redacted>",
        "nested": [{"password": "<redacted>"}],
    }
