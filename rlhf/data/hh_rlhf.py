"""Anthropic HH-RLHF transcripts -> the conversational preference example of DESIGN.md.

An HH row is two transcripts, ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``, that share every turn but the
last Assistant one. The prompt is everything before that last Assistant turn.
"""

from __future__ import annotations

import re

_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_ROLE = {"Human": "user", "Assistant": "assistant"}

# A row longer than this (chosen + rejected, in characters) is dropped as ``too_long``: no model's context
# window holds it, and truncating it would silently change the preference.
# Real HH rows are a few thousand characters.
MAX_ROW_CHARS = 200_000


def _has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds half of a UTF-16 surrogate pair (JSON ``"\\ud83d"`` alone).

    json.loads accepts one, but no UTF-8 writer can encode it: pyarrow would fail when the dataset is built.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_transcript(text: str) -> list[dict[str, str]]:
    """Split an HH transcript into chat messages ``[{"role": "user"|"assistant", "content": str}]``.

    Text before the first marker is ignored (HH rows start with the marker). Content is stripped.
    """
    parts = _TURN.split(text)
    messages = []
    # parts = [preamble, role, content, role, content, ...]
    for role, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": _ROLE[role], "content": content.strip()})
    return messages


def to_preference_example(chosen: str, rejected: str) -> tuple[dict | None, str | None]:
    """Turn one HH row into ``{"prompt": [...], "chosen": [msg], "rejected": [msg]}``.

    Returns ``(example, None)``, or ``(None, reason)`` for a row that cannot be used; the reasons are
    the counting keys logged by the loaders: ``too_long`` (over :data:`MAX_ROW_CHARS`), ``lone_surrogate``
    (text that cannot be written as UTF-8), ``no_final_assistant_turn``, ``empty_response``,
    ``chosen_equals_rejected``, ``prompts_differ``, ``empty_prompt``.
    """
    if len(chosen) + len(rejected) > MAX_ROW_CHARS:
        return None, "too_long"  # checked first: no point parsing megabytes we will drop
    if _has_lone_surrogate(chosen) or _has_lone_surrogate(rejected):
        return None, "lone_surrogate"  # the prompt and both replies are cut from these two strings
    chosen_msgs = parse_transcript(chosen)
    rejected_msgs = parse_transcript(rejected)
    for msgs in (chosen_msgs, rejected_msgs):
        if not msgs or msgs[-1]["role"] != "assistant":
            return None, "no_final_assistant_turn"
    prompt = chosen_msgs[:-1]
    if rejected_msgs[:-1] != prompt:
        return None, "prompts_differ"
    if not prompt or prompt[-1]["role"] != "user":
        return None, "empty_prompt"
    chosen_reply, rejected_reply = chosen_msgs[-1]["content"], rejected_msgs[-1]["content"]
    if not chosen_reply or not rejected_reply:
        return None, "empty_response"
    if chosen_reply == rejected_reply:
        return None, "chosen_equals_rejected"
    example = {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen_reply}],
        "rejected": [{"role": "assistant", "content": rejected_reply}],
    }
    return example, None


def render_transcript(messages: list[dict[str, str]]) -> str:
    """Inverse of :func:`parse_transcript`: messages back to the HH text format."""
    names = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"\n\n{names[m['role']]}: {m['content']}" for m in messages)
