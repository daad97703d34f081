"""Damaged model directories (a cut-short weights file, a config.json field of the wrong type): one ModelLoadError
naming the file and the fix, never a traceback; in our own cache the fix is to delete the cache directory."""

import json
import shutil
from pathlib import Path

import pytest

from rlhf.errors import ModelLoadError
from rlhf.modeling.models import load_causal_lm, load_reward_backbone, load_tokenizer, model_directory
from tests.modeling.test_models import settings
from tests.test_train_cli import error_lines, run_train


def copy_of_tiny_model(tmp_path: Path) -> Path:
    """A saved model directory of our own to damage (the session cache's copy stays intact)."""
    model, _, _ = settings()
    return Path(shutil.copytree(model_directory(model), tmp_path / "saved-model"))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def set_config_field(directory: Path, field: str, value) -> None:
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text())
    config[field] = value
    config_file.write_text(json.dumps(config))


def load_everything(path: Path, *overrides: str):
    """Load the tokenizer and both backbones from ``path`` as an rm/dpo/ppo run would."""
    model, hardware, _ = settings(*overrides)
    tokenizer = load_tokenizer(str(path), model)
    load_causal_lm(str(path), model, hardware, tokenizer)
    load_reward_backbone(str(path), model, hardware, tokenizer)


@pytest.mark.parametrize("keep", [0.5, 0.0001, 0.0], ids=["half", "inside_header", "empty"])
def test_truncated_weights_name_the_file_and_say_re_download(tmp_path, keep):
    saved = copy_of_tiny_model(tmp_path)
    truncate(saved / "model.safetensors", keep)
    with pytest.raises(ModelLoadError) as caught:
        load_everything(saved, f"model.name_or_path={saved}")
    message = str(caught.value)
    assert f"{saved / 'model.safetensors'} is truncated or corrupt" in message
    assert "re-download or re-convert" in message
    assert "\n" not in message  # one line, as train.py prints it


@pytest.mark.parametrize(
    "field, value, shown",
    [("hidden_size", "sixty-four", "'sixty-four'"), ("num_hidden_layers", None, "None")],
    ids=["string_for_int", "null_for_int"],
)
def test_config_field_of_the_wrong_type_names_file_and_field(tmp_path, field, value, shown):
    saved = copy_of_tiny_model(tmp_path)
    set_config_field(saved, field, value)
    with pytest.raises(ModelLoadError) as caught:
        load_everything(saved, f"model.name_or_path={saved}")
    message = str(caught.value)
    assert str(saved / "config.json") in message
    assert f"field '{field}'" in message and shown in message
    assert "\n" not in message


@pytest.mark.parametrize("damaged", ["config.json", "tokenizer.json"])
def test_cut_short_json_in_a_saved_model_says_re_download_not_hub(tmp_path, damaged):
    saved = copy_of_tiny_model(tmp_path)
    truncate(saved / damaged)
    with pytest.raises(ModelLoadError) as caught:
        load_everything(saved, f"model.name_or_path={saved}")
    message = str(caught.value)
    assert message.startswith(f"could not load the model directory {saved} (")
    assert "re-download or re-convert" in message and "hf download" not in message
    assert "\n" not in message


@pytest.mark.parametrize("damaged", ["model.safetensors", "config.json", "tokenizer.json"])
def test_damaged_file_in_the_model_cache_says_delete_the_cache_directory(tmp_path, damaged):
    built = Path(model_directory(settings()[0]))
    # A cache of our own holding a copy of the built tiny model, under the name model_directory looks for.
    cached = Path(shutil.copytree(built, tmp_path / "cache" / built.name))
    truncate(cached / damaged)
    own_cache = f"model.cache_dir={tmp_path}/cache"
    assert model_directory(settings(own_cache)[0]) == str(cached)
    with pytest.raises(ModelLoadError) as caught:
        load_everything(cached, own_cache)
    message = str(caught.value)
    assert f"delete {cached} " in message and "rebuilt" in message
    assert "hf download" not in message  # not a hub problem
    assert "\n" not in message


def test_train_cli_reports_truncated_weights_as_one_error_line(tmp_path):
    saved = copy_of_tiny_model(tmp_path)
    truncate(saved / "model.safetensors")
    result = run_train(tmp_path, "algo=rm", f"model.name_or_path={saved}")
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result)
    assert f"{saved / 'model.safetensors'} is truncated or corrupt" in line
    assert "Traceback" not in result.stderr
