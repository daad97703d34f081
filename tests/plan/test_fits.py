"""Whether a config fits: the 7B presets, the one-line error for one that does not, and the CPU no-op."""

import re

import pytest

from rlhf.errors import ConfigError
from rlhf.plan import check_fits, plan
from rlhf.plan import fits as fits_module
from rlhf.plan.fits import verdict
from rlhf.plan.memory import weights_bytes
from tests.conftest import compose_train

PRESETS = [
    "llama2_7b_hh_rm",
    "llama2_7b_hh_sft",
    "llama2_7b_hh_dpo",
    "llama2_7b_hh_ppo",
    "llama2_7b_hh_grpo",
    "llama2_7b_hh_rloo",
]


@pytest.mark.parametrize("hardware", ["gpu_24gb", "a100_80gb"])
@pytest.mark.parametrize("experiment", PRESETS)
def test_every_llama2_preset_fits_both_gpu_profiles(experiment, hardware):
    cfg = compose_train([f"experiment={experiment}", f"hardware={hardware}"])
    assert verdict(plan(cfg)) is None
    check_fits(cfg)


def one_line_error(overrides: list[str]) -> str:
    """check_fits's error for the composed overrides, asserted to be one line."""
    with pytest.raises(ConfigError) as raised:
        check_fits(compose_train(overrides))
    line = str(raised.value)
    assert "\n" not in line
    return line


def test_the_whole_rollout_in_one_chunk_does_not_fit_a_24gb_gpu():
    line = one_line_error(["experiment=llama2_7b_hh_ppo", "hardware=gpu_24gb", "algo.rollout_chunk_size=512"])
    match = re.fullmatch(
        r"algo\.rollout_chunk_size=512 needs (\d+\.\d) GiB of KV cache \(512 x 384 tokens\) on hardware=gpu_24gb "
        r"\(24 GiB\); \d+\.\d GiB in all at the rollout peak: set algo\.rollout_chunk_size<=(\d+)",
        line,
    )
    assert match, line
    # 2 (K, V) x 32 layers x 4096 x 4 bytes (fp32: a 4-bit model's K and V, measured) x 384 tokens x 512 prompts
    assert float(match.group(1)) == round(2 * 32 * 4096 * 4 * 384 * 512 / 2**30, 1) == 192.0
    # the value it names fits, one more does not
    fit = int(match.group(2))
    check_fits(compose_train(["experiment=llama2_7b_hh_ppo", "hardware=gpu_24gb", f"algo.rollout_chunk_size={fit}"]))
    with pytest.raises(ConfigError):
        check_fits(
            compose_train(["experiment=llama2_7b_hh_ppo", "hardware=gpu_24gb", f"algo.rollout_chunk_size={fit + 1}"])
        )


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_a_whole_rollout_too_large_for_one_generate_call_names_algo_batch_size(algo):
    # TRL generates the whole rollout at once: 512 completions (128 prompts x 4) of 256 + 128 tokens
    overrides = [f"experiment=llama2_7b_hh_{algo}", "hardware=gpu_24gb"]
    line = one_line_error([*overrides, "algo.batch_size=512"])
    match = re.fullmatch(
        r"algo\.batch_size=512 needs (\d+\.\d) GiB of KV cache \(512 x 384 tokens\) on hardware=gpu_24gb \(24 GiB\); "
        r"\d+\.\d GiB in all at the rollout peak: set algo\.batch_size=(\d+)",
        line,
    )
    assert match, line
    assert float(match.group(1)) == 192.0  # as PPO's 512-prompt chunk: 2 x 32 layers x 4096 x 4 bytes x 384 x 512
    # the size it names is whole groups of num_generations=4, fits, and the next group does not
    fit = int(match.group(2))
    assert fit % 4 == 0
    check_fits(compose_train([*overrides, f"algo.batch_size={fit}"]))
    with pytest.raises(ConfigError, match=r"^algo\.batch_size="):
        check_fits(compose_train([*overrides, f"algo.batch_size={fit + 4}"]))


def test_a_micro_batch_too_large_names_a_divisor_that_fits():
    cfg = compose_train(["experiment=llama2_7b_hh_sft", "hardware=gpu_24gb", "hardware.gradient_checkpointing=false",
                         "hardware.micro_batch_size=64"])  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"^hardware\.micro_batch_size=64 needs .*: set hardware\.micro_batch_size=(\d+)$"
    ) as raised:
        check_fits(cfg)
    micro = int(re.search(r"=(\d+)$", str(raised.value)).group(1))
    assert 64 % micro == 0  # accumulation needs a divisor of algo.batch_size


def test_a_model_per_role_at_7b_on_24gb_asks_for_the_shared_base():
    cfg = compose_train(["experiment=llama2_7b_hh_ppo", "hardware=gpu_24gb", "algo.share_base=false"])
    shared = plan(compose_train(["experiment=llama2_7b_hh_ppo", "hardware=gpu_24gb"]))
    separate = plan(cfg)
    weights = lambda p: sum(v for k, v in p.phases[0].resident.items() if k.startswith("weights"))  # noqa: E731
    causal = weights_bytes(shared.arch, shared.precision)
    assert weights(shared) == causal
    # policy and reference causal LMs, reward and value classifiers (no LM head)
    assert weights(separate) == 2 * causal + 2 * weights_bytes(shared.arch, shared.precision, causal=False)
    # four bases and a chunk's KV cache: the chunk must shrink (the shared base fits the preset's chunk)
    assert verdict(shared) is None
    assert re.fullmatch(r"algo\.rollout_chunk_size=\d+ needs .* set algo\.rollout_chunk_size<=\d+", verdict(separate))


def test_no_memory_size_means_no_check_and_no_model_read(monkeypatch):
    monkeypatch.setattr(fits_module, "plan", lambda cfg: pytest.fail("the plan was computed"))
    check_fits(compose_train(["debug=tiny", "algo=ppo"]))  # hardware=cpu: memory_gib is null


def test_an_unknown_hub_model_is_not_checked_but_not_refused(caplog):
    cfg = compose_train(["experiment=llama2_7b_hh_sft", "hardware=gpu_24gb", "model.name_or_path=nobody/unknown-7b"])
    check_fits(cfg)  # its config.json would come with the first load: the run goes on, unchecked
    assert "memory not checked: model.name_or_path=nobody/unknown-7b" in caplog.text
