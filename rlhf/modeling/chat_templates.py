"""Chat templates for tokenizers that ship none (e.g. Llama-2 base)."""

# Anthropic HH transcript format; the assistant turn ends with EOS so the model learns to stop.
HH_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '\n\nHuman: ' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '\n\nAssistant: ' + message['content'] + eos_token }}"
    "{% else %}{{ message['content'] }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\n\nAssistant: ' }}{% endif %}"
)

CHAT_TEMPLATES = {"hh": HH_TEMPLATE}
