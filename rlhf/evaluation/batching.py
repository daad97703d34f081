"""How evaluate.py orders and batches the policies' answers, so each forward pads little and none is repeated.

- :func:`shortest_first`: prompts answered in order of length, so each generate() chunk pads its prompts (the
  prefill and every decoding step's attention) to a similar length, not to the longest prompt of the set.
- :func:`rows_of`: one log-prob batch of a rollout, without the response columns padded in all of its rows.
- :class:`GenerationLogits`: a PolicyView that also hands rlhf/modeling/generation.py's ``sample(...,
  with_logprobs=True)`` the logits each token was drawn from, so the policy's log-probs for KL come from the
  decoding itself (as PPO's rollouts take theirs) and only the reference needs a forward over the samples.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from transformers import GenerationConfig

from rlhf.evaluation.policies import PolicyView
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


class GenerationLogits:
    """``view`` with the generate() that ``sample(..., with_logprobs=True)`` asks for: ``with_logits`` also
    returns the raw logits [B, T, V] of each sampled token (Hugging Face's ``output_logits``, through the view's
    own generate). Everything else is the view's."""

    value_on_policy = False  # no value head: sample() asks for no values

    def __init__(self, view: PolicyView):
        self.view = view
        self.tokenizer = view.tokenizer

    @property
    def device(self) -> torch.device:
        return self.view.device

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        config: GenerationConfig,
        with_logits: bool = False,
        with_values: bool = False,
    ):
        """[B, P] left-padded prompts -> [B, P + T]; with ``with_logits`` also the logits [B, T, V]."""
        if with_values:
            raise ValueError("evaluation's policies have no value head")
        if not with_logits:
            return self.view.generate(input_ids, attention_mask, config)
        config = copy.deepcopy(config)
        config.output_logits, config.return_dict_in_generate = True, True
        out = self.view.generate(input_ids, attention_mask, config)
        return out.sequences, torch.stack(out.logits, 1)

    def response_head(self, role: str, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int):
        return self.view.response_head(role, input_ids, attention_mask, prompt_len)
