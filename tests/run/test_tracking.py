"""metrics.jsonl always; W&B offline into the run dir; W&B failures never stop a run; no secrets logged; tags W&B
accepts, readable run names, a resumed run continues its W&B run, compared model artifacts recorded."""

import dataclasses
import json
import logging
import sys
import time
from types import SimpleNamespace

import pytest

from rlhf.config import LoggerSettings
from rlhf.errors import ConfigError
from rlhf.run.tracking import (
    NAME_LIMIT,
    TAG_LIMIT,
    WANDB_RUN,
    Tracker,
    override_labels,
    redact_secrets,
    run_name,
    wandb_key_found,
    wandb_mode,
)
from tests.run.wandb_files import offline_runs, run_record

WANDB = LoggerSettings(name="wandb", project="rlhf-tests", entity=None, group=None, mode=None, init_timeout=60)
NONE = LoggerSettings(name="none", project=None, entity=None, group=None, mode="disabled", init_timeout=60)


def reset_wandb() -> None:
    # wandb reads the environment once per process; without a reset a later test would reach the server
    # (and base URL) an earlier test's environment named.
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        wandb.teardown()


@pytest.fixture(autouse=True)
def no_wandb_credentials(tmp_path, monkeypatch):
    """No key from the environment or the real ~/.netrc; W&B's own files stay under tmp_path."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    reset_wandb()
    yield
    reset_wandb()


def tracker_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("rlhf") and r.levelno == logging.WARNING]


def metrics_rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_metrics_jsonl_gets_one_object_per_step(tmp_path):
    tracker = Tracker(tmp_path, NONE, config={}, job_type="rm", group="g", tags=[])
    tracker.log({"loss": 0.5}, step=1)
    tracker.log({"loss": float("nan")}, step=2)
    tracker.finish()
    assert metrics_rows(tmp_path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": "nan"}]


def test_mode_is_offline_without_a_key_and_online_with_one(tmp_path, monkeypatch):
    assert not wandb_key_found() and wandb_mode(WANDB) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode(WANDB) == "online"
    assert wandb_mode(NONE) == "disabled"
    assert wandb_mode(dataclasses.replace(WANDB, mode="offline")) == "offline"


@pytest.mark.parametrize("host", ["api.wandb.ai", "api.forge.coreweave.com"])  # older / newer wandb's login
def test_a_wandb_login_netrc_entry_counts_as_a_key_for_its_host_only(tmp_path, monkeypatch, host):
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {host}\n  login user\n  password {'k' * 40}\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert wandb_key_found() and wandb_mode(WANDB) == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")  # a self-hosted server: no entry for it
    assert not wandb_key_found()


def test_offline_run_writes_into_the_run_directory(tmp_path):
    tracker = Tracker(tmp_path, WANDB, config={"a": 1}, job_type="rm", group="g", tags=["t"])
    assert tracker.wandb_run is not None
    tracker.log({"loss": 1.0}, step=1)
    tracker.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_online_without_a_key_logs_offline_with_one_warning(tmp_path, caplog):
    # wandb.init online without a key prompts or fails; the run must go on, offline, for `wandb sync` later.
    tracker = Tracker(tmp_path, dataclasses.replace(WANDB, mode="online"), config={}, job_type="rm", group="g", tags=[])
    assert tracker.wandb_run is not None
    tracker.log({"loss": 1.0}, step=1)
    tracker.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    [warning] = tracker_warnings(caplog)
    assert "no W&B API key was found" in warning and "wandb sync" in warning
    assert metrics_rows(tmp_path) == [{"step": 1, "loss": 1.0}]


def test_unreachable_server_gives_one_warning_and_local_logging(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    started = time.monotonic()
    settings = dataclasses.replace(WANDB, mode="online", init_timeout=5)
    tracker = Tracker(tmp_path, settings, config={}, job_type="rm", group="g", tags=[])
    assert time.monotonic() - started < 30  # bounded by init_timeout, not wandb's default minutes
    assert tracker.wandb_run is None
    tracker.log({"loss": 1.0}, step=2)
    tracker.finish()
    assert metrics_rows(tmp_path) == [{"step": 2, "loss": 1.0}]
    [warning] = tracker_warnings(caplog)
    assert "W&B is off for this run" in warning and "logger.init_timeout" in warning


def test_wandb_failing_to_import_or_init_keeps_local_logging(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    tracker = Tracker(
        tmp_path, dataclasses.replace(WANDB, mode="offline"), config={}, job_type="rm", group="g", tags=[]
    )
    assert tracker.wandb_run is None
    tracker.log({"loss": 1.0}, step=3)
    assert metrics_rows(tmp_path) == [{"step": 3, "loss": 1.0}]
    [warning] = tracker_warnings(caplog)
    assert "ModuleNotFoundError" in warning and "pip install wandb" in warning


def test_init_timeout_must_be_positive():
    with pytest.raises(ConfigError, match=r"logger.init_timeout=0 is out of range: must be > 0"):
        dataclasses.replace(WANDB, init_timeout=0)


def test_secrets_are_redacted_from_logged_config():
    config = {
        "logger": {"api_key": "abc", "wandb_api_key": "w" * 40, "project": "p"},
        "hub_token": "hf_x",
        "hf_token": "hf_y",
        "nested": [{"password": "pw", "client_secret": "s"}],
        "model": {"pad_token": "<|endoftext|>", "eos_token": "</s>"},  # vocabulary entries, not credentials
        "algo": {"max_new_tokens": 48},
    }
    assert redact_secrets(config) == {
        "logger": {"api_key": "<redacted>", "wandb_api_key": "<redacted>", "project": "p"},
        "hub_token": "<redacted>",
        "hf_token": "<redacted>",
        "nested": [{"password": "<redacted>", "client_secret": "<redacted>"}],
        "model": {"pad_token": "<|endoftext|>", "eos_token": "</s>"},
        "algo": {"max_new_tokens": 48},
    }


def test_a_long_override_becomes_a_short_tag_and_w_and_b_stays_on(tmp_path):
    # wandb refuses a tag over 64 characters, and with it the whole run: long overrides must be cut.
    files = "dataset.data_files={train: /data/" + "x" * 150 + "/train.jsonl, test: /data/test.jsonl}"
    other = files.replace("test.jsonl", "eval.jsonl")  # the same first 64 characters
    assert len(files) > 200
    tags = ["algo=dpo", files, other, "a  tag\nwith\tspaces", "", "algo=dpo"]
    tracker = Tracker(tmp_path, WANDB, config={}, job_type="dpo", group="g", tags=tags)
    assert tracker.wandb_run is not None
    tracker.finish()
    [folder] = offline_runs(tmp_path)
    got = list(run_record(folder).tags)
    assert all(1 <= len(tag) <= TAG_LIMIT for tag in got)
    assert got[0] == "algo=dpo" and got[3] == "a tag with spaces" and len(got) == 4  # no empty tag, no repeat
    assert got[1].startswith("dataset.data_files={train: /data/xxx") and got[1] != got[2]


def test_run_names_hold_the_algorithm_and_the_overrides_shortened():
    sweep_job = ["sweep=dpo_beta_lora_grid", "algo.beta=0.05", "lora=r8", "hydra.run.dir=x", "logger.mode=offline"]
    assert run_name("dpo", sweep_job) == "dpo algo.beta=0.05 lora=r8"
    assert run_name("dpo", ["sweep=dpo_beta_lora_grid", "algo.beta=0.1", "lora=r8"]) != run_name("dpo", sweep_job)
    assert run_name("rm", ["algo=rm", "++resume=/runs/rm/1"]) == "rm"  # a resume keeps its run's name anyway
    long = run_name("sft", ["dataset.data_files={train: /" + "y" * 300 + "}", "seed=1"])
    assert len(long) <= NAME_LIMIT and long.startswith("sft dataset.data_files={train: /y") and long.endswith(" seed=1")
    where = ["+resume=x", "hydra.job.num=1", "hydra/launcher=joblib", "logger=wandb", "logger.mode=online"]
    assert override_labels(["algo=dpo", *where, "lora.r=8"]) == ["algo=dpo", "lora.r=8"]


def test_a_resumed_tracker_continues_the_saved_w_and_b_run(tmp_path):
    first = Tracker(tmp_path, WANDB, config={}, job_type="dpo", group="g", tags=["a"], name="dpo lora=r8")
    first.log({"loss": 1.0}, step=1)
    first.finish()
    saved = json.loads((tmp_path / WANDB_RUN).read_text())
    assert saved == {"id": first.run_id, "name": "dpo lora=r8", "tags": ["a"]}
    resumed = Tracker(tmp_path, WANDB, config={}, job_type="dpo", group="g", tags=["a", "b"], name="x", resume=True)
    assert resumed.run_id == saved["id"]
    resumed.finish()
    folders = offline_runs(tmp_path)
    # offline-run-<date>_<time>-<id>, and "-1" after it when both runs started within one second
    assert len(folders) == 2 and {f.name.split("-")[3] for f in folders} == {saved["id"]}
    record = run_record(folders[1])
    assert (record.run_id, record.display_name, list(record.tags)) == (saved["id"], "dpo lora=r8", ["a", "b"])
    fresh = Tracker(tmp_path / "new", WANDB, config={}, job_type="dpo", group="g", tags=[])  # not a resume
    assert fresh.run_id != saved["id"]
    fresh.finish()


class FakeRun:
    """A W&B run online: records the artifacts it is told to use; names with "missing" are not on the server."""

    id = "fake"

    def __init__(self):
        self.used = []
        self.config = SimpleNamespace(update=lambda values, **_: self.used.append(("config", values)))

    def use_artifact(self, name, type=None):
        if "missing" in name:
            raise ValueError(f"artifact {name} not found\nmore detail")
        self.used.append((name, type))


def test_online_the_compared_artifacts_become_inputs_and_failures_are_one_warning(tmp_path, caplog):
    tracker = Tracker(tmp_path, NONE, config={}, job_type="evaluate", group="g", tags=[])
    tracker._run = run = FakeRun()  # W&B online, as far as the tracker can tell
    record = {"policies": {"dpo": "dpo-abc", "sft": "sft-missing1"}, "judge": "rm-missing2"}
    tracker.use_models(record, ["dpo-abc", "sft-missing1", "rm-missing2"])
    assert run.used == [("config", {"compared_artifacts": record}), ("dpo-abc:latest", "model")]
    [warning] = tracker_warnings(caplog)
    assert "sft-missing1" in warning and "rm-missing2" in warning and "\n" not in warning
