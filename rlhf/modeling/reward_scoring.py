"""Score conversations with a sequence-classification reward model."""

from __future__ import annotations

import torch


def conversation_texts(tokenizer, conversations: list[list[dict]]) -> list[str]:
    """Render message lists with the tokenizer's chat template, as TRL's trainers do."""
    return [tokenizer.apply_chat_template(messages, tokenize=False) for messages in conversations]


@torch.no_grad()
def score_conversations(
    model, tokenizer, conversations: list[list[dict]], batch_size: int, max_length: int
) -> torch.Tensor:
    """Rewards [N] for N conversations; each is read at its last real token (right padding).

    Conversations longer than ``max_length`` tokens keep their end (left truncation), where the response is.
    Batches are cut from the conversations sorted by length, so each pads to less; the scores come back
    in the input order.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    texts = conversation_texts(tokenizer, conversations)
    scores = torch.empty(len(texts))
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        ids = (
            tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
            if texts
            else []
        )
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt").to(device)
            scores[rows] = (
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float().cpu()
            )
    finally:
        tokenizer.truncation_side = side
        model.train(was_training)
    return scores


def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor, families: list[str]) -> dict[str, float]:
    """Accuracy (chosen scored higher; ties count half), mean margin, and accuracy per family.

    chosen, rejected: [N] rewards of the two responses to the same prompt.
    """
    wins = (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
    metrics = {"eval_accuracy": wins.mean().item(), "eval_margin": (chosen - rejected).mean().item()}
    for family in sorted(set(families)):
        idx = torch.tensor([f == family for f in families])
        metrics[f"eval_accuracy/{family}"] = wins[idx].mean().item()
    return metrics
