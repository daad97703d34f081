"""Reports on a sweep (or any folder of run directories, or an evaluation's folder) without W&B:

    python -m rlhf.report multirun_sweeps/<timestamp> [--metric eval_loss] [--minimize | --maximize]
                          [--curve loss] [--wandb-report]

Writes into the directory ``compare.md`` (the ranked table) and ``curves.png`` when it holds run directories,
and always ``report.html``: a self-contained page (no network) with the ranked table, training curves by
algorithm and by each swept hyperparameter, a parallel-coordinates plot and any evaluate.py results.json with
its intervals. Jobs rank best first in the metric's direction (losses low, accuracies high) unless told.
``--wandb-report`` also saves the same panels as a W&B Report when W&B is online, its URL in wandb_report.txt.

    cli.py           compare() and the command line (``python -m rlhf.report``, ``make compare``)
    data.py          reading run directories and evaluate's results.json; swept hyperparameters; ranking
    tables.py        the ranked and evaluation tables (markdown, HTML rows)
    plots.py         the figures (matplotlib, no display)
    html.py          the self-contained report.html
    wandb_report.py  the same panels as a W&B Report (wandb-workspaces), imported only for --wandb-report
"""

from rlhf.report.cli import compare, main
from rlhf.report.data import collect_jobs, rank_jobs, swept_overrides

__all__ = ["collect_jobs", "compare", "main", "rank_jobs", "swept_overrides"]
