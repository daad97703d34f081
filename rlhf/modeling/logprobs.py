"""Summed response log-probabilities of conversations, tokenized the way TRL's DPO/SFT trainers do.

TRL's convention (trl 1.16 ``DPOTrainer._prepare_dataset`` / ``SFTTrainer``): the prompt messages are
rendered with the chat template and ``add_generation_prompt=True``; prompt + response is rendered
whole; the response tokens are those after the longest common prefix of the two. The sequence is
then cut to ``max_length`` keeping its start (TRL's only truncation mode), so a long response loses its
tail. Before that, :func:`truncate_prompt` cuts prompts to ``max_prompt_length`` keeping their end
(the oldest turns go first), which is what the DPO and SFT wrappers feed TRL, so every kept example has
at least ``max_length - max_prompt_length`` response tokens and the numbers here match TRL's
``logps/*`` and ``rewards/*``. The same whole-turn cut gives the prompts a policy answers in PPO, the online
arms and evaluation (rlhf/modeling/generation.py), and the reward model then reads that cut prompt and the
response: a prompt is cut one way wherever it is used.

Which weights score is the caller's business: a PEFT model scores with its active adapter; wrap the
call in :func:`reference_mode` to score with the DPO reference (the frozen ``ref`` adapter when one
exists, else the base with adapters disabled).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from rlhf.errors import ConfigError

Messages = list[dict]


def render_ids(tokenizer, messages: Messages, add_generation_prompt: bool = False) -> list[int]:
    """``messages`` rendered with the chat template and tokenized as TRL tokenizes them (no special tokens added
    beyond the template's own)."""
    out = tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=True
    )
    return list(out["input_ids"])


def generation_prompt_ids(tokenizer, prompt: Messages) -> list[int]:
    """``prompt`` rendered with the chat template and the assistant turn opened (the generation prompt), as TRL's
    DPO / SFT / GRPO trainers tokenize a prompt and as rlhf/modeling/generation.py feeds it to the policy."""
    return render_ids(tokenizer, prompt, add_generation_prompt=True)


def prompt_length(tokenizer, prompt: Messages) -> int:
    """Tokens of ``prompt`` rendered with the chat template and the generation prompt."""
    return len(generation_prompt_ids(tokenizer, prompt))


def truncate_prompt(
    tokenizer, prompt: Messages, max_prompt_length: int | None, key: str = "algo.max_prompt_length"
) -> Messages:
    """``prompt`` cut to at most ``max_prompt_length`` rendered tokens, keeping its end.

    Whole leading turns are dropped first (the conversation still starts with a user turn); if the last
    user turn alone is too long, the start of its text is cut. The chat template's own tokens (e.g. a
    default system turn) always stay. Returns the prompt unchanged when it fits.
    """
    if max_prompt_length is None or prompt_length(tokenizer, prompt) <= max_prompt_length:
        return prompt
    messages = list(prompt)
    while len(messages) > 1 and prompt_length(tokenizer, messages) > max_prompt_length:
        messages = messages[1:]
        while len(messages) > 1 and messages[0]["role"] != "user":
            messages = messages[1:]
    if prompt_length(tokenizer, messages) <= max_prompt_length:
        return messages
    # One turn left and still too long: keep the end of its text.
    last = messages[-1]
    content_ids = tokenizer(last["content"], add_special_tokens=False)["input_ids"]
    overhead = prompt_length(tokenizer, [{**last, "content": ""}])
    budget = max_prompt_length - overhead
    if budget < 1:
        raise ConfigError(
            f"{key}={max_prompt_length} is out of range: the chat template alone takes {overhead} tokens; "
            f"raise it well above that"
        )
    for _ in range(8):  # decoding then re-encoding can shift a token or two at the cut
        cut = {**last, "content": tokenizer.decode(content_ids[-budget:])}
        excess = prompt_length(tokenizer, [cut]) - max_prompt_length
        if excess <= 0 or budget <= 1:
            return [cut]
        budget = max(1, budget - excess)
    return [cut]


def tokenize_completions(tokenizer, prompt: Messages, completions: list[Messages]) -> tuple[list[int], list[list[int]]]:
    """(prompt_ids, [completion_ids, ...]) as TRL splits them.

    The prompt part is the common prefix of the rendered prompt (with generation prompt) and every
    rendered prompt + completion; each completion's ids are the rest of its full rendering.
    """
    prompt_ids = generation_prompt_ids(tokenizer, prompt)
    full = [render_ids(tokenizer, prompt + completion) for completion in completions]
    n = len(prompt_ids)
    for ids in full:
        common = 0
        for a, b in zip(prompt_ids, ids):
            if a != b:
                break
            common += 1
        n = min(n, common)
    return prompt_ids[:n], [ids[n:] for ids in full]


@torch.no_grad()
def completion_logprobs(
    model,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    pad_token_id: int,
    batch_size: int,
    max_length: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log pi(completion | prompt) [N] and the number of completion tokens scored [N].

    prompt_ids, completion_ids: N token-id lists each. Sequence i is prompt_ids[i] + completion_ids[i],
    cut to ``max_length`` keeping its start; sequences are batched in length order (results come back in
    input order), right-padded into input_ids [B, T]. Only the last
    K = T - (shortest prompt) + 1 positions get logits [B, K, V] (``logits_to_keep``), and the
    log-softmax runs only at completion positions: log p(token t | tokens < t) for the M completion
    tokens of the batch [M], summed back per sequence [B]. The model runs in eval mode (no dropout) and
    is returned to its previous mode.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    # Batches of similar length waste less compute on padding; results go back to the input order.
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]) + len(completion_ids[i]))
    sums, counts = [], []
    try:
        for start in range(0, len(order), batch_size):
            seqs, masks = [], []
            for i in order[start : start + batch_size]:
                p, c = prompt_ids[i], completion_ids[i]
                ids, mask = p + c, [0] * len(p) + [1] * len(c)
                if max_length is not None:
                    ids, mask = ids[:max_length], mask[:max_length]
                seqs.append(ids)
                masks.append(mask)
            width = max(len(s) for s in seqs)
            input_ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(seqs), width), dtype=torch.long)
            completion = torch.zeros((len(seqs), width), dtype=torch.long)
            for row, (s, m) in enumerate(zip(seqs, masks)):
                input_ids[row, : len(s)] = torch.tensor(s)
                attention[row, : len(s)] = 1
                completion[row, : len(m)] = torch.tensor(m)
            input_ids, attention, completion = input_ids.to(device), attention.to(device), completion.to(device)
            first = int(completion.float().argmax(dim=1).min())  # earliest completion token in the batch
            keep = width - max(first, 1) + 1  # logits at positions [width - keep, width) predict tokens after them
            logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False, logits_to_keep=keep).logits
            logits = logits[:, -keep:-1]  # [B, keep-1, V]: position t predicts token t+1
            targets = input_ids[:, width - keep + 1 :]  # [B, keep-1]
            mask = completion[:, width - keep + 1 :].bool()  # [B, keep-1]
            rows = torch.arange(len(seqs), device=device).unsqueeze(1).expand_as(mask)[mask]  # [M]
            token_logps = (
                F.log_softmax(logits[mask].float(), dim=-1).gather(1, targets[mask].unsqueeze(1)).squeeze(1)
            )  # [M]
            sums.append(torch.zeros(len(seqs), device=device).index_add_(0, rows, token_logps).cpu())
            counts.append(mask.sum(dim=1).float().cpu())
    finally:
        model.train(was_training)
    if not sums:
        return torch.empty(0), torch.empty(0)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return torch.cat(sums)[inverse], torch.cat(counts)[inverse]


def response_logprobs(
    model,
    tokenizer,
    prompts: list[Messages],
    responses: list[Messages],
    batch_size: int,
    max_length: int | None,
    max_prompt_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs [N] of ``responses[i]`` (assistant messages) after ``prompts[i]``, and token counts [N]."""
    prompt_ids, completion_ids = [], []
    for prompt, response in zip(prompts, responses):
        p, (c,) = tokenize_completions(tokenizer, truncate_prompt(tokenizer, prompt, max_prompt_length), [response])
        prompt_ids.append(p)
        completion_ids.append(c)
    return completion_logprobs(model, prompt_ids, completion_ids, tokenizer.pad_token_id, batch_size, max_length)


def preference_logprobs(
    model,
    tokenizer,
    examples: list[dict],
    batch_size: int,
    max_length: int | None,
    max_prompt_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of the chosen [N] and rejected [N] responses of preference examples, as TRL's DPO sees them.

    examples: ``{"prompt", "chosen", "rejected"}`` message lists (DESIGN.md contract). The prompt split is
    shared by the pair (TRL takes the shorter common prefix), so the result matches TRL's ``logps/chosen``
    and ``logps/rejected`` for the same model.
    """
    prompt_ids, chosen_ids, rejected_ids = [], [], []
    for ex in examples:
        prompt = truncate_prompt(tokenizer, ex["prompt"], max_prompt_length)
        p, (c, r) = tokenize_completions(tokenizer, prompt, [ex["chosen"], ex["rejected"]])
        prompt_ids.append(p)
        chosen_ids.append(c)
        rejected_ids.append(r)
    pad = tokenizer.pad_token_id
    chosen, _ = completion_logprobs(model, prompt_ids, chosen_ids, pad, batch_size, max_length)
    rejected, _ = completion_logprobs(model, prompt_ids, rejected_ids, pad, batch_size, max_length)
    return chosen, rejected


REFERENCE_ADAPTER = "ref"  # the name TRL 1.16 gives (and looks for) the frozen copy of a pretrained adapter


@contextlib.contextmanager
def reference_mode(model) -> Iterator[None]:
    """Inside, a PEFT policy scores as the DPO reference: the frozen ``ref`` adapter if present, else the base.

    A model without adapters (full fine-tuning) has no reference inside it; that is an error here.
    """
    peft_config = getattr(model, "peft_config", None)
    if not peft_config:
        raise ValueError("reference_mode needs a PEFT model; with full fine-tuning the reference is a separate model")
    if REFERENCE_ADAPTER in peft_config:
        previous = model.active_adapter
        requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
        model.set_adapter(REFERENCE_ADAPTER)  # peft also flips requires_grad here; restored below
        try:
            yield
        finally:
            model.set_adapter(previous)
            for name, p in model.named_parameters():
                p.requires_grad_(requires_grad[name])
    else:
        with model.disable_adapter():
            yield
