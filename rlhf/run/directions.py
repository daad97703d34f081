"""Which way is better for a metric: the report's ranking and the Optuna preset read it from here.

Losses, perplexities, KL and wall time are minimised; accuracies, scores, rewards and win rates maximised.
A name this rule does not know is an error that names it and the fix (say it on the command line), rather
than a silent guess that would rank a sweep backwards.
"""

from __future__ import annotations

from rlhf.errors import ConfigError

MINIMIZE = ("loss", "perplexity", "kl", "nll", "wall_time", "peak_rss", "time")
MAXIMIZE = ("accuracy", "score", "scores", "reward", "rewards", "win_rate", "margin", "gold")


def direction(metric: str) -> str:
    """``"minimize"`` or ``"maximize"`` for a summary.json key such as ``eval_loss`` or ``gold_score_final``.

    The key's words (split at ``_``, ``/`` and ``.``) are matched against the two lists; a key that names
    words of both (e.g. ``kl_score``) or of neither is refused.
    """
    words = set(metric.replace("/", "_").replace(".", "_").split("_"))
    words |= {"_".join(pair) for pair in zip(metric.split("_"), metric.split("_")[1:])}  # win_rate, wall_time
    low, high = words & set(MINIMIZE), words & set(MAXIMIZE)
    if bool(low) == bool(high):
        raise ConfigError(
            f"cannot tell whether {metric!r} is better high or low: give the direction "
            "(rlhf.report --minimize / --maximize, or hydra.sweeper.direction=minimize|maximize)"
        )
    return "minimize" if low else "maximize"
