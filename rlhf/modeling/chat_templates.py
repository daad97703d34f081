"""Chat templates for tokenizers that ship none (e.g. Llama-2 base), and a leaner one for those that do.

``chatml``: ChatML (``<|im_start|>role\\n...<|im_end|>\\n``) exactly as SmolLM2's own template writes it, without the
default system turn that template adds to every conversation lacking one ("You are a helpful AI assistant named
SmolLM, trained by Hugging Face": 21 tokens). No one asked for that turn, and every sequence paid for it: on the
synthetic set it is 38% of a prompt's tokens and 27% of a preference pair's (56 -> 35 and 155 -> 113 tokens on
average). A conversation that has its own system message keeps it.

``hh``: the Anthropic HH transcript format, ``\\n\\nHuman: ...\\n\\nAssistant: ...``, the assistant turn ending
with EOS so the model learns to stop. Two rules keep generation on the sequences training saw (TRL's DPO / SFT
and our log-probs tokenize the prompt with the generation prompt and prompt + response, and the response
starts where the two diverge):

- the generation prompt is ``\\n\\nAssistant:`` with no trailing space. The space belongs to the response's
  first token (`` It``, or SentencePiece's ``▁It``), as it is tokenized in every training sequence; a prompt
  ending in a lone space token would leave the policy continuing a context no training sequence has, and TRL
  would drop that token from every training prompt. So the generation prompt's tokens are a prefix of the
  tokens of prompt + response (tests/modeling/test_prompt_rendering.py);
- the sequence starts with the tokenizer's BOS once, written by the template: ``apply_chat_template`` (how TRL,
  the reward model and generation all tokenize) adds no special tokens of its own, and Llama-2 was pretrained
  with BOS first. A tokenizer without a BOS token gets none.
"""

# Anthropic HH transcript format; see the module docstring for the BOS and the generation prompt.
HH_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '\n\nHuman: ' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '\n\nAssistant: ' + message['content'] + eos_token }}"
    "{% else %}{{ message['content'] }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\n\nAssistant:' }}{% endif %}"
)

# ChatML without a default system turn; see the module docstring.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CHAT_TEMPLATES = {"hh": HH_TEMPLATE, "chatml": CHATML_TEMPLATE}
