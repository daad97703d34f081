"""Each metric's direction: losses and KL down, accuracies and scores up, an unknown name refused."""

import pytest

from rlhf.errors import ConfigError
from rlhf.run.directions import direction


@pytest.mark.parametrize(
    "metric, expected",
    [
        ("eval_loss", "minimize"),
        ("eval_perplexity", "minimize"),
        ("kl_final", "minimize"),
        ("wall_time_s", "minimize"),
        ("eval_accuracy", "maximize"),
        ("gold_score_final", "maximize"),
        ("objective/scores", "maximize"),
        ("objective/rlhf_reward", "maximize"),
    ],
)
def test_known_metrics_have_their_direction(metric, expected):
    assert direction(metric) == expected


@pytest.mark.parametrize("metric", ["train_steps", "kl_score"])
def test_an_unknown_or_ambiguous_metric_is_refused_with_the_fix(metric):
    with pytest.raises(ConfigError, match=rf"cannot tell whether '{metric}' is better high or low: give the direction"):
        direction(metric)
