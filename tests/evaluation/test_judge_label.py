"""results.md says which judge the RM columns are, and marks a policy judged by its own reward model."""

from rlhf.evaluation import tables
from tests.evaluation.test_tables_plots import fake_results


def headline(results: dict) -> list[str]:
    return tables.results_markdown(results).split("## Gold score against base")[0].splitlines()


def test_a_policy_judged_by_its_own_reward_model_is_marked():
    results = fake_results() | {"judge_is_proxy_of": ["ppo"]}
    results["judge"] = {"run_dir": "outputs/rm/x", "reward_max_length": 256, "independent": False}
    lines = headline(results)
    assert any(
        "judge reward model outputs/rm/x (the proxy: the reward model ppo optimised; the gold judge is the "
        "independent one)" in line
        for line in lines
    )
    marked = [line.split(" | ")[0].strip("| ") for line in lines if "judged by its own reward model" in line]
    assert marked == ["ppo"]


def test_an_independent_judge_is_named_as_such():
    results = fake_results() | {"judge_is_proxy_of": [], "gold": False}
    results["judge"] = {"run_dir": "outputs/judge/y", "reward_max_length": 256, "independent": True}
    text = "\n".join(headline(results))
    assert "independent judge reward model outputs/judge/y;" in text
    assert "judged by its own reward model" not in text
