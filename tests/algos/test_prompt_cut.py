"""One prompt cut everywhere: a long multi-turn prompt loses whole leading turns the same way in DPO's and SFT's
training data, PPO's rollouts (and so evaluation's, which sample the same way) and the online arms' prompt
column, and the reward model reads exactly that cut prompt + the response (tiny Llama, no training)."""

import pytest
import torch
from torch import nn

from rlhf.algos import dpo, online_trl, sft
from rlhf.algos.ppo.roles import Role, Roles
from rlhf.algos.ppo.scoring import score_rollout
from rlhf.config import HardwareSettings, ModelSettings, from_node
from rlhf.errors import ConfigError
from rlhf.modeling.generation import Sampling, cut_prompts, response_separator, sample
from rlhf.modeling.logprobs import generation_prompt_ids, prompt_length, tokenize_completions
from rlhf.modeling.models import load_causal_lm, load_reward_backbone, load_tokenizer, model_directory
from tests.conftest import compose_train, tiny_overrides

TEMPLATES = {
    "chatml": {},
    "chatml_own": {"model.chat_template": "null"},
    "hh": {"model.chat_template": "hh"},
}  # ours, SmolLM2's own (default system turn), HH


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


LONG = [
    user("Tell me everything you know about the history of bread, from the first grains onwards. " * 3),
    assistant("Bread goes back at least fourteen thousand years, to flatbreads baked from wild cereals. " * 3),
    user("And how do I bake a simple loaf at home?"),
    assistant("Mix flour, water, salt and yeast, knead, let it rise, then bake it hot."),
    user("How long should it rise?"),
]
SHORT = [user("What is 2+2?")]
CHOSEN = [assistant("About an hour, until it has doubled.")]


def tiny(template: str):
    cfg = compose_train(tiny_overrides(**TEMPLATES[template]))
    model = from_node(ModelSettings, cfg.model, "model")
    path = model_directory(model)
    return model, from_node(HardwareSettings, cfg.hardware, "hardware"), path, load_tokenizer(path, model)


def limit_dropping_two_turns(tokenizer) -> int:
    """A max_prompt_length that LONG does not fit in, its last three turns do: the cut drops the first two."""
    limit = prompt_length(tokenizer, LONG[2:])
    assert prompt_length(tokenizer, LONG[1:]) > limit and prompt_length(tokenizer, LONG) > limit
    return limit


class RecordingReward(nn.Module):
    """A reward model that records the token ids it is given (each row without its padding)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.rows = inner, []

    def forward(self, input_ids, attention_mask):
        self.rows += [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask)]
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def tiny_roles(template: str) -> Roles:
    """PPO's roles on a random tiny Llama (policy = reference = value trunk) and a recording tiny reward model."""
    model, hardware, path, tokenizer = tiny(template)
    lm = load_causal_lm(path, model, hardware, tokenizer)
    head = lm.get_output_embeddings()
    value_head = nn.Linear(lm.config.hidden_size, 1, bias=False)
    reward = RecordingReward(load_reward_backbone(path, model, hardware, tokenizer))
    roles = {"policy": Role(lm, None, head), "reference": Role(lm, None, head), "value": Role(lm, None, value_head)}
    return Roles(tokenizer, roles, reward, tokenizer, trainable={}, shared=False)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_dpo_sft_and_the_online_arms_cut_a_long_prompt_at_the_same_turn(template):
    _, _, _, tokenizer = tiny(template)
    limit = limit_dropping_two_turns(tokenizer)
    example = {"prompt": LONG, "chosen": CHOSEN, "rejected": [assistant("No idea.")]}
    dpo_prompt = dpo.training_dataset(tokenizer, [example], limit)[0]["prompt"]
    assert dpo_prompt == LONG[2:]  # whole turns dropped from the start; still starts with a user turn
    assert sft.sft_dataset(tokenizer, [example], limit)[0]["prompt"] == dpo_prompt
    assert online_trl.prompt_dataset(tokenizer, [example], limit)[0]["prompt"] == dpo_prompt
    assert cut_prompts(tokenizer, [LONG, SHORT], limit) == [dpo_prompt, SHORT]


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_rollouts_answer_the_cut_prompt_and_the_reward_model_reads_it_with_the_response(template):
    roles = tiny_roles(template)
    tokenizer = roles.tokenizer
    limit = limit_dropping_two_turns(tokenizer)
    example = {"prompt": LONG, "chosen": CHOSEN, "rejected": CHOSEN}
    dpo_prompt = dpo.training_dataset(tokenizer, [example], limit)[0]["prompt"]
    sampling = Sampling(max_prompt_length=limit, max_new_tokens=6, temperature=1.0, top_k=0, top_p=1.0)

    torch.manual_seed(0)
    rollout = sample(roles, [LONG, SHORT], sampling)
    assert rollout.prompts == [dpo_prompt, SHORT]
    # The policy's prompt tokens: the cut prompt as TRL tokenizes DPO's training prompt (template turns and all).
    trl_prompt, _ = tokenize_completions(tokenizer, dpo_prompt, [CHOSEN])
    given = rollout.prompt_ids[0][rollout.prompt_mask[0].bool()].tolist()
    assert given == trl_prompt == generation_prompt_ids(tokenizer, LONG[2:])
    assert len(given) <= limit

    score_rollout(roles, rollout, sampling.temperature, chunk_size=2, reward_max_length=512, with_values=False)
    expected = [
        tokenizer(tokenizer.apply_chat_template(conversation, tokenize=False), add_special_tokens=False)["input_ids"]
        for conversation in (
            dpo_prompt + [assistant(rollout.texts[0])],
            SHORT + [assistant(rollout.texts[1])],
        )
    ]
    assert sorted(roles.reward_model.rows) == sorted(expected)  # scored in length order
    assert rollout.conversations() == [
        dpo_prompt + [assistant(rollout.texts[0])],
        SHORT + [assistant(rollout.texts[1])],
    ]
    assert all(LONG[0]["content"][:40] not in tokenizer.decode(row) for row in roles.reward_model.rows)


def test_the_online_reward_reads_the_cut_prompt_and_the_response_as_message_content():
    _, _, _, tokenizer = tiny("hh")
    limit = limit_dropping_two_turns(tokenizer)
    prompt = online_trl.prompt_dataset(tokenizer, [{"prompt": LONG}], limit)[0]["prompt"]
    seen = []

    def scorer(conversations):
        seen.extend(conversations)
        return torch.zeros(len(conversations))

    reward = online_trl.RewardFunction(
        scorer, tokenizer.eos_token_id, None, with_gold=False, separator=response_separator(tokenizer)
    )
    # TRL decodes the sampled ids: under the HH template the first token carries the space after "Assistant:".
    reward([prompt], [[assistant(" About an hour.")]], [[1, tokenizer.eos_token_id]])
    assert seen == [LONG[2:] + [assistant("About an hour.")]]


def test_a_limit_below_the_template_names_the_sampling_option():
    _, _, _, tokenizer = tiny("chatml_own")  # SmolLM2's own template adds a default system turn of ~20 tokens
    with pytest.raises(ConfigError, match=r"sampling\.max_prompt_length=8 is out of range: the chat template alone"):
        cut_prompts(tokenizer, [LONG], 8)
