from rlhf.data.hh_rlhf import parse_transcript, render_transcript, to_preference_example


def test_parse_multi_turn_transcript_keeps_every_turn():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: What is 2+2?\n\nAssistant: 4."
    assert parse_transcript(text) == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
    ]


def test_render_is_the_inverse_of_parse():
    messages = [{"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "c"}]
    assert parse_transcript(render_transcript(messages)) == messages


def test_prompt_is_everything_before_the_last_assistant_turn():
    shared = "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Tell me a fact."
    example, reason = to_preference_example(
        shared + "\n\nAssistant: Water boils at 100 C.", shared + "\n\nAssistant: No."
    )
    assert reason is None
    assert [m["role"] for m in example["prompt"]] == ["user", "assistant", "user"]
    assert example["prompt"][-1]["content"] == "Tell me a fact."
    assert example["chosen"] == [{"role": "assistant", "content": "Water boils at 100 C."}]
    assert example["rejected"] == [{"role": "assistant", "content": "No."}]


def test_unusable_rows_give_their_reason():
    prompt = "\n\nHuman: Hi"
    cases = {
        (prompt, prompt): "no_final_assistant_turn",
        (prompt + "\n\nAssistant: ", prompt + "\n\nAssistant: ok"): "empty_response",
        (prompt + "\n\nAssistant: same", prompt + "\n\nAssistant: same"): "chosen_equals_rejected",
        (prompt + "\n\nAssistant: a", "\n\nHuman: Other\n\nAssistant: b"): "prompts_differ",
        ("\n\nAssistant: a", "\n\nAssistant: b"): "empty_prompt",
        (prompt + "\n\nAssistant: a \ud83d", prompt + "\n\nAssistant: b"): "lone_surrogate",
    }
    for (chosen, rejected), expected in cases.items():
        assert to_preference_example(chosen, rejected) == (None, expected)


def test_real_hh_sample_parses(hh_sample):
    from rlhf.data.jsonl import read_hh_rows

    rows = read_hh_rows(hh_sample)
    results = [to_preference_example(r["chosen"], r["rejected"]) for r in rows]
    usable = [ex for ex, reason in results if reason is None]
    assert len(rows) == 200
    assert len(usable) >= 195
    assert all(ex["prompt"][-1]["role"] == "user" for ex in usable)
