"""A checkpoint file with a planted pickle is refused in one line naming it, never run, never with torch's advice
to load it with weights_only=False (issue 42 case 9)."""

import random

import numpy as np
import pytest
import torch
from transformers.trainer_pt_utils import safe_globals

from rlhf.errors import ConfigError
from rlhf.run.safe_load import refuse_unsafe_pickles
from tests.planted_pickle import Payload


def test_a_planted_pickle_is_named_in_one_line_and_never_runs(tmp_path):
    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    torch.save({"state": {0: {"exp_avg": torch.zeros(2)}}}, checkpoint / "optimizer.pt")
    # what the Trainer saves: numpy's RNG state, loaded under transformers' allowlist
    torch.save({"python": random.getstate(), "numpy": np.random.get_state()}, checkpoint / "rng_state.pth")
    refuse_unsafe_pickles(checkpoint, safe_globals)  # the run's own files pass

    marker = tmp_path / "payload-ran"
    torch.save({"lr": Payload(marker)}, checkpoint / "scheduler.pt")
    with pytest.raises(ConfigError) as refused:
        refuse_unsafe_pickles(checkpoint, safe_globals)
    line = str(refused.value)
    assert line.startswith(f"{checkpoint / 'scheduler.pt'} is not a checkpoint file this project wrote"), line
    assert "\n" not in line and "weights_only" not in line
    assert not marker.exists()
