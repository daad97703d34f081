"""How evaluate.py orders and batches the policies' answers, so each forward pads little and none is repeated.

- :func:`shortest_first`: prompts answered in order of length, so each generate() chunk pads its prompts (the
  prefill and every decoding step's attention) to a similar length, not to the longest prompt of the set.
- :func:`rows_of`: one log-prob batch of a rollout, without the response columns padded in all of its rows.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhf.modeling.generation import Rollout
from rlhf.modeling.logprobs import generation_prompt_ids


def shortest_first(tokenizer, prompts: list[list[dict]]) -> np.ndarray:
    """Indices [N] that order ``prompts`` by their encoded length (chat template included), shortest first."""
    return np.argsort([len(generation_prompt_ids(tokenizer, prompt)) for prompt in prompts], kind="stable")


def rows_of(rollout: Rollout, rows: torch.Tensor) -> Rollout:
    """The rollout of ``rows`` [b] alone, less the response columns that are padding in all of them: a batch of
    short answers need not run to the longest answer's width (padding is masked out, so sums stay the same)."""
    width = max(int(rollout.mask[rows].sum(1).max()), 1)
    picked = rows.tolist()
    return Rollout(
        [rollout.prompts[i] for i in picked],
        rollout.prompt_ids[rows],
        rollout.prompt_mask[rows],
        rollout.responses[rows, :width],
        rollout.mask[rows, :width],
        rollout.has_eos[rows],
        [rollout.texts[i] for i in picked],
        logprobs=None if rollout.logprobs is None else rollout.logprobs[rows, :width],
    )
