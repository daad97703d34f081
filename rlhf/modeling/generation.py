"""Sampling responses from a policy: prompts -> a Rollout (ids, masks, texts, optional log-probs).

Shared by PPO's rollouts, its held-out evaluation and evaluate.py.

Prompts are cut and rendered as training cuts and renders them: :func:`cut_prompts` drops whole leading turns to
``max_prompt_length`` tokens (rlhf/modeling/logprobs.py truncate_prompt, what DPO and SFT train on), and
:func:`encode_prompts` tokenizes each with the chat template and the assistant turn opened, exactly as TRL
tokenizes a prompt, so the generation prompt is a prefix of the tokens of prompt + response training sees
(BOS and all: rlhf/modeling/chat_templates.py). The Rollout keeps the cut prompts: the reward model and the
gold judge read the conversation the policy saw (``Rollout.conversations``). Its texts are the responses as
message content: without the separator the template writes between the generation prompt and the content
(the HH template's space after ``Assistant:``, which the policy generates as part of its first token).

Shapes: B prompts in a batch, P prompt columns (left padding), T response columns (right padding after the
first EOS), V vocabulary. Every forward gets position ids from its attention mask (token_math.position_ids), so
left padding never shifts positions.

The model side is any object with ``tokenizer``, ``device``, ``generate(input_ids, attention_mask,
config, with_logits=False, with_values=False)`` (which decodes with :func:`decode`) and ``response_head(role,
input_ids, attention_mask, prompt_len)``: PPO's Roles (rlhf/algos/ppo/roles.py) and evaluation's PolicyView.

Chunks (``sample(..., chunk_size=C)``): the prompts are generated C at a time, so the KV cache (and, with
log-probs kept, the generation logits) holds C rows, not B; each chunk drops the prompt columns that are
padding in all of its rows. Against one ``generate`` call over the batch, a chunked rollout keeps the prompt
ids and masks [B, P] (encoded once for the batch) and, with greedy decoding, the same responses, masks and
texts, with log-probs and values within float tolerance (every forward takes its position ids from the mask,
so padding never changes a row; only float rounding differs, which could flip an exact near-tie). With
sampling it is another draw from the same distribution, not the same tokens: the global RNG is consumed
chunk by chunk (each decoding step draws for the rows of one chunk). A given (seed, chunk size) reproduces
its rollout exactly, which resuming relies on. No generator is seeded per chunk: that would still differ
from the unchunked draw, and would fork the training RNG stream that checkpoints restore.

Decoding (:func:`decode`, what every policy view's ``generate`` calls): transformers' ``generate`` with its KV cache
and stopping rules, except the draw of a sampled token. transformers draws with ``torch.multinomial``, which makes
an exponential variate for each of the V entries of every row at every step (~12 ms of a ~55 ms SmolLM2 decoding
step at 16 rows on 2 CPU cores: BENCHMARKS.md "Decoding"); :class:`InverseCdfDraw` draws the same distribution
from one uniform number a row. The global RNG is still consumed per chunk and step, so the chunk rules above hold.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from rlhf.config import check
from rlhf.modeling.logprobs import Messages, generation_prompt_ids, truncate_prompt
from rlhf.modeling.token_math import (
    contains_eos,
    entropy_from_logits,
    gather_logprobs,
    response_mask_after_eos,
    truncate_after_eos,
)


@dataclass(frozen=True)
class Sampling:
    """How responses are drawn: the ``sampling`` node of conf/algo/ppo.yaml and conf/evaluate.yaml
    (every default and its reason lives there). Greedy decoding is chosen where it is used."""

    max_prompt_length: int
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float

    def check(self, node: str) -> None:
        """Range checks; ``node`` is where the settings live (``algo.sampling``), for the error message."""
        check(self.max_prompt_length >= 8, f"{node}.max_prompt_length", self.max_prompt_length, "must be >= 8 tokens")
        check(self.max_new_tokens >= 1, f"{node}.max_new_tokens", self.max_new_tokens,
              "must be >= 1: the policy has to generate at least one token (e.g. 48)")  # fmt: skip
        check(self.temperature > 0, f"{node}.temperature", self.temperature,
              "must be > 0 (sampling; 1.0 = the model's own distribution)")  # fmt: skip
        check(self.top_k >= 0, f"{node}.top_k", self.top_k, "must be >= 0 (0 = no top-k filter)")
        check(0 < self.top_p <= 1, f"{node}.top_p", self.top_p, "must be in (0, 1] (1 = no nucleus filter)")

    def logprob_temperature(self, greedy: bool) -> float:
        """The temperature of the distribution a token was drawn from (1 for greedy decoding)."""
        return 1.0 if greedy else self.temperature

    def generation_config(self, tokenizer, greedy: bool = False) -> GenerationConfig:
        """Plain sampling from softmax(logits / temperature) (top_k=0 and top_p=1 switch those filters off),
        or greedy decoding, stopping at EOS; nothing from the model's own generation defaults."""
        common = dict(
            max_new_tokens=self.max_new_tokens, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
        )
        if greedy:
            return GenerationConfig(do_sample=False, **common)
        return GenerationConfig(
            do_sample=True, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, **common
        )


@dataclass
class Rollout:
    """B prompts and the policy's responses to them."""

    prompts: list[list[dict]]  # prompt messages as the policy saw them: cut by whole turns (cut_prompts)
    prompt_ids: torch.Tensor  # [B, P] long, left-padded
    prompt_mask: torch.Tensor  # [B, P] 0/1
    responses: torch.Tensor  # [B, T] long, pad after the first EOS
    mask: torch.Tensor  # [B, T] bool: real response tokens, up to and including EOS
    has_eos: torch.Tensor  # [B] bool: the response ended by itself (not cut at max_new_tokens)
    texts: list[str]  # decoded responses, without EOS
    # [B, T] log-probs and entropies of the sampling distribution, from the generation logits (sample(...,
    # with_logprobs=True)); None when not kept.
    logprobs: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    # [B, T] old values, from the generation pass when the value head sits on the policy; None otherwise.
    values: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def conversations(self) -> list[list[dict]]:
        """(Cut) prompt + response as messages: what the reward model reads, the conversation the policy saw."""
        return [prompt + [{"role": "assistant", "content": text}] for prompt, text in zip(self.prompts, self.texts)]

    def joined(self, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """([prompt | response] ids [b, P'+T], attention mask [b, P'+T], P') for the selected rows.

        Prompt columns that are padding in every selected row are dropped (P' <= P): less compute,
        and the position ids from the mask make the result identical.
        """
        prompt_ids, prompt_mask, responses, mask = self.prompt_ids, self.prompt_mask, self.responses, self.mask
        if rows is not None:
            prompt_ids, prompt_mask, responses, mask = prompt_ids[rows], prompt_mask[rows], responses[rows], mask[rows]
        prompt_ids, prompt_mask = trim_left_padding(prompt_ids, prompt_mask)
        input_ids = torch.cat([prompt_ids, responses], 1)
        attention_mask = torch.cat([prompt_mask.long(), mask.long()], 1)
        return input_ids, attention_mask, prompt_ids.shape[1]


PROMPT_KEY = "sampling.max_prompt_length"  # the option a prompt cut error names (algo.sampling / evaluation.sampling)


def cut_prompts(
    tokenizer, prompts: list[Messages], max_prompt_length: int | None, key: str = PROMPT_KEY
) -> list[Messages]:
    """Each prompt cut to ``max_prompt_length`` rendered tokens by whole turns, keeping its end: the cut DPO and
    SFT train on (rlhf/modeling/logprobs.py truncate_prompt); prompts that fit come back unchanged."""
    return [truncate_prompt(tokenizer, prompt, max_prompt_length, key) for prompt in prompts]


def encode_prompts(tokenizer, prompts: list[Messages], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt ids [B, P] and mask [B, P], left-padded: each prompt rendered with the chat template and the
    assistant turn opened and tokenized as TRL tokenizes a prompt (logprobs.generation_prompt_ids; the
    template's own BOS, nothing added). Cut the prompts first (cut_prompts): nothing is cut here."""
    rows = [generation_prompt_ids(tokenizer, prompt) for prompt in prompts]
    width = max((len(row) for row in rows), default=0)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def response_separator(tokenizer) -> str:
    """The text the chat template writes between the generation prompt and an assistant message's content
    (" " for the HH template, "" for ChatML): the policy generates it as part of its first token, and it is
    no part of the response's content. "" when the template renders a prompt differently alone."""
    probe = "RESPONSE-PROBE"
    prompt = [{"role": "user", "content": "hi"}]
    opened = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": probe}], tokenize=False)
    if not full.startswith(opened) or probe not in full[len(opened) :]:
        return ""
    return full[len(opened) :].split(probe)[0]


class InverseCdfDraw(LogitsProcessor):
    """The draw of multinomial sampling as the last logits processor, for greedy decoding's argmax to pick: scores
    [b, V] (after temperature, top-k, top-p) -> [b, V] that are 0 at the token drawn from softmax(scores) and -inf
    elsewhere. One uniform number u per row, scaled to the row's total mass, picks the first token whose
    cumulative probability exceeds u: a token of probability 0 (cut by top-k / top-p) is never drawn."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cdf = scores.softmax(-1).cumsum(-1)  # [b, V]
        total = cdf[:, -1:]  # [b, 1], 1 up to the cumsum's rounding
        # u < total strictly (u = rand * total can round up to it), so the search never runs past the last token
        u = torch.minimum(torch.rand_like(total) * total, torch.nextafter(total, torch.zeros_like(total)))
        drawn = torch.searchsorted(cdf, u, right=True)  # [b, 1]
        return torch.full_like(scores, float("-inf")).scatter_(1, drawn, 0.0)


def sampling_processors(config: GenerationConfig) -> LogitsProcessorList:
    """The warpers transformers' generate applies for ``config``'s temperature, top_k and top_p (the knobs of
    :class:`Sampling`), in its order, then :class:`InverseCdfDraw`."""
    processors = LogitsProcessorList()
    if config.temperature is not None and config.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k:
        processors.append(TopKLogitsWarper(config.top_k))
    if config.top_p is not None and config.top_p < 1.0:
        processors.append(TopPLogitsWarper(config.top_p))
    processors.append(InverseCdfDraw())
    return processors


def decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, config: GenerationConfig, **kwargs):
    """``model.generate`` on [B, P] left-padded prompts (``kwargs`` go to it), sampling with :class:`InverseCdfDraw`
    instead of torch.multinomial when ``config.do_sample`` (module docstring): the same warpers, then the draw,
    then transformers' greedy path takes it. Greedy configs go to ``generate`` unchanged."""
    if config.do_sample:
        kwargs["logits_processor"] = sampling_processors(config)
        config = copy.deepcopy(config)
        config.do_sample, config.temperature, config.top_k, config.top_p = False, None, None, None
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config, **kwargs)


@torch.no_grad()
def sample(
    roles,
    prompts: list[list[dict]],
    sampling: Sampling,
    greedy: bool = False,
    chunk_size: int | None = None,
    with_logprobs: bool = False,
) -> Rollout:
    """The policy answers each prompt by sampling or ``greedy``, ``chunk_size`` prompts per ``generate`` call
    (None: the whole batch in one call); see the module docstring for what chunking keeps equal. Each prompt is
    first cut to ``sampling.max_prompt_length`` tokens by whole turns (cut_prompts); the Rollout holds the cut.

    ``with_logprobs``: also keep the log-probs [B, T] and entropies [B, T] of the distribution each token
    was drawn from, softmax(logits / temperature), from the generation logits (as TRL's PPOTrainer did):
    the policy's old log-probs without a second forward over the rollout; and, when the value head sits
    on the policy (``roles.value_on_policy``), the old values [B, T] from the same pass."""
    tokenizer = roles.tokenizer
    prompts = cut_prompts(tokenizer, prompts, sampling.max_prompt_length)
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, roles.device)
    config = sampling.generation_config(tokenizer, greedy)
    with_values = with_logprobs and roles.value_on_policy
    chunks, logprobs, entropy, values = [], [], [], []
    for rows in chunk_rows(len(prompts), chunk_size):
        ids, mask = trim_left_padding(prompt_ids[rows], prompt_mask[rows])
        if not with_logprobs:
            chunks.append(roles.generate(ids, mask, config)[:, ids.shape[1] :])
            continue
        sequences, logits, *chunk_values = roles.generate(
            ids, mask, config, with_logits=True, with_values=with_values
        )  # logits [b, t, V]
        chunks.append(sequences[:, ids.shape[1] :])
        chunk_logprobs, chunk_entropy = logprobs_and_entropy(logits, chunks[-1], sampling.logprob_temperature(greedy))
        logprobs.append(chunk_logprobs)
        entropy.append(chunk_entropy)
        values += chunk_values
    width = max(c.shape[1] for c in chunks)
    pad = tokenizer.pad_token_id

    def padded(parts, value):
        return torch.cat([torch.nn.functional.pad(c, (0, width - c.shape[1]), value=value) for c in parts])

    responses = padded(chunks, pad)
    eos = tokenizer.eos_token_id
    # Generation pads only after EOS, so a row without EOS is real up to the length limit.
    mask = response_mask_after_eos(responses, eos)
    has_eos = contains_eos(responses, eos)
    responses = truncate_after_eos(responses, eos, pad)
    lengths = mask.sum(1) - has_eos.long()  # decode without the EOS token
    separator = response_separator(tokenizer)
    texts = [
        response_content(tokenizer.decode(row[:n], skip_special_tokens=True), separator)
        for row, n in zip(responses.tolist(), lengths.tolist())
    ]
    kept = (padded(logprobs, 0.0), padded(entropy, 0.0)) if with_logprobs else (None, None)
    return Rollout(list(prompts), prompt_ids, prompt_mask, responses, mask, has_eos, texts, *kept,
                   values=padded(values, 0.0) if with_values else None)  # fmt: skip


def response_content(text: str, separator: str) -> str:
    """A decoded response as message content: without the template's separator in front (response_separator)."""
    return text[len(separator) :] if separator and text.startswith(separator) else text


def chunk_rows(n: int, chunk_size: int | None) -> list[slice]:
    """Consecutive slices of ``chunk_size`` rows covering range(n) (the last may be shorter); None: one slice."""
    step = max(n, 1) if chunk_size is None else chunk_size
    if step < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    return [slice(start, start + step) for start in range(0, n, step)]


def trim_left_padding(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ids, mask [b, P] left-padded -> [b, P'] without the leading columns that are padding in every row
    (a chunk's rows were padded to the longest prompt of the whole batch; the KV cache need not hold that)."""
    first = int(mask.any(0).float().argmax())  # first column with a real token in some row
    return ids[:, first:], mask[:, first:]


def logprobs_and_entropy(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [b, T, V] (any float dtype), tokens [b, T] -> log-probs of the tokens and entropies, both [b, T]
    float32, under softmax(logits / temperature). Upcast and scaled one row at a time: one [T, V] copy."""
    logprobs = gather_logprobs(logits, tokens, temperature)
    return logprobs, torch.cat([entropy_from_logits(row.float() / temperature) for row in logits.split(1)])


def response_logprobs(roles, role: str, rollout: Rollout, rows: torch.Tensor, temperature: float,
                      with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """Log-probs [b, T] of the sampled response tokens under ``role`` (policy or reference), from
    logits / temperature as in sampling; optionally the entropy [b, T] of that distribution."""
    input_ids, attention_mask, prompt_len = rollout.joined(rows)
    logits = roles.response_head(role, input_ids, attention_mask, prompt_len)  # [b, T, V], bf16 under autocast
    if not with_entropy:
        return gather_logprobs(logits, rollout.responses[rows], temperature), None
    return logprobs_and_entropy(logits, rollout.responses[rows], temperature)


def micro_batches(rollout: Rollout, rows: torch.Tensor, size: int) -> list[torch.Tensor]:
    """``rows`` [n] cut into micro batches of ``size`` rows after sorting them by real length (prompt +
    response tokens), so each micro batch pads to less (Rollout.joined drops the prompt columns that are
    padding in every row of a micro batch)."""
    lengths = rollout.prompt_mask[rows].sum(1) + rollout.mask[rows].sum(1)
    return list(rows[torch.argsort(lengths.cpu(), stable=True)].split(size))
