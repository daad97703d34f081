"""What the policy is given to answer is the start of what it is trained on: the generation prompt's tokens are the
first tokens of the training tokenization of prompt + response (TRL's DPO / SFT split), with BOS once, for the HH
template and SmolLM2's own; and a generated response decodes back to the message content training saw."""

import pytest

from rlhf.config import ModelSettings, from_node
from rlhf.modeling.generation import encode_prompts, response_content, response_separator
from rlhf.modeling.logprobs import render_ids, tokenize_completions
from rlhf.modeling.models import load_tokenizer, model_directory
from rlhf.modeling.reward_scoring import conversation_texts
from tests.conftest import compose_train

TEMPLATES = {
    "chatml": [],
    "chatml_own": ["model.chat_template=null"],
    "hh": ["model.chat_template=hh"],
}  # ours (no system turn), SmolLM2's own (a default system turn), HH


def tokenizer_for(template: str):
    model = from_node(ModelSettings, compose_train(["model=tiny_llama", *TEMPLATES[template]]).model, "model")
    return load_tokenizer(model_directory(model), model)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


CASES = [  # (prompt, response): responses that start with a word, a digit, punctuation, a newline
    ([user("What is 2+2?")], "It is 4."),
    ([user("Count to three."), assistant("1 2 3"), user("Now to four.")], "1 2 3 4"),
    ([user("Say hi")], "!hi"),
    ([user("A list, please.")], "\n- one\n- two"),
]


def generation_prompt(tokenizer, prompt) -> list[int]:
    ids, mask = encode_prompts(tokenizer, [prompt], "cpu")
    return ids[0][mask[0].bool()].tolist()


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("prompt, response", CASES)
def test_the_generation_prompt_is_the_start_of_the_training_sequence(template, prompt, response):
    tokenizer = tokenizer_for(template)
    given = generation_prompt(tokenizer, prompt)
    trained = render_ids(tokenizer, prompt + [assistant(response)])  # how TRL tokenizes prompt + response
    assert trained[: len(given)] == given
    # TRL's prompt / completion split keeps the whole generation prompt (it drops a tail that is not a prefix)
    trl_prompt, (completion,) = tokenize_completions(tokenizer, prompt, [[assistant(response)]])
    assert trl_prompt == given and trl_prompt + completion == trained


def test_the_hh_generation_prompt_ends_at_the_colon_not_on_a_space_token():
    tokenizer = tokenizer_for("hh")
    given = generation_prompt(tokenizer, [user("What is 2+2?")])
    assert tokenizer.decode(given).endswith("\n\nAssistant:")
    assert tokenizer.decode(given[-1:]) == ":"
    prompt = [user("Hi"), assistant("Hello."), user("Bye")]  # a message still writes "Assistant: " + content
    assert tokenizer.apply_chat_template(prompt, tokenize=False).endswith(
        "\n\nAssistant: Hello." + tokenizer.eos_token + "\n\nHuman: Bye"
    )


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_the_reward_model_reads_the_training_tokens(template):
    tokenizer = tokenizer_for(template)
    prompt, response = CASES[1]
    (text,) = conversation_texts(tokenizer, [prompt + [assistant(response)]])  # rlhf/modeling/reward_scoring.py
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == render_ids(
        tokenizer, prompt + [assistant(response)]
    )


def test_hh_sequences_start_with_bos_once():
    """The HH template writes the tokenizer's BOS first (Llama-2 was pretrained with it); nothing adds another."""
    tokenizer = tokenizer_for("hh")
    bos = tokenizer.bos_token_id
    prompt, response = CASES[1]
    given = generation_prompt(tokenizer, prompt)
    trained = render_ids(tokenizer, prompt + [assistant(response)])
    (text,) = conversation_texts(tokenizer, [prompt + [assistant(response)]])
    scored = tokenizer(text, add_special_tokens=False)["input_ids"]
    for ids in (given, trained, scored):
        assert ids[0] == bos and ids.count(bos) == 1


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("prompt, response", CASES)
def test_a_generated_response_decodes_to_the_message_content(template, prompt, response):
    tokenizer = tokenizer_for(template)
    given = generation_prompt(tokenizer, prompt)
    generated = render_ids(tokenizer, prompt + [assistant(response)])[len(given) :]
    assert generated[-1] == tokenizer.eos_token_id or tokenizer.eos_token_id in generated
    generated = generated[: generated.index(tokenizer.eos_token_id)]  # the policy stops at EOS
    separator = response_separator(tokenizer)
    assert separator == {"hh": " ", "chatml": "", "chatml_own": ""}[template]
    assert response_content(tokenizer.decode(generated, skip_special_tokens=True), separator) == response
