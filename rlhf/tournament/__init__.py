"""PPO or DPO, over seeds: ``python -m rlhf.tournament [--seeds N] [--arms dpo,ppo] [--dir DIR] [overrides...]``
(``make tournament``) trains the reward model and every arm with seeds 0..N-1 (fixed, never chosen after looking),
evaluates each seed, and writes one report with intervals over seeds and prompts.

Stage-major Hydra multiruns, every job a normal run directory ``<dir>/<stage>/seed_<k>``: rm (and the independent
judge where the dataset has no gold judge), dpo, then the online arms (ppo, grpo, rloo) against their seed's
reward model, then evaluate.py per seed into ``<dir>/evaluate/seed_<k>``. Latest pointers go to ``<dir>/outputs``,
never the repository's outputs/. ``--resume DIR`` skips finished jobs and evaluations and continues stopped ones.

    plan.py       the plan (tournament.json) and the stages' command lines; what is left to run
    driver.py     runs the stages as subprocesses, stops at the first failed one with how to continue
    collect.py    reads the evaluations' per-prompt scores and the runs' summaries
    stats.py      crossed intervals (seeds x the same prompts), p-values, Holm, paired differences
    aggregate.py  report.json's numbers: scores, win rates, KL, differences with verdicts, costs
    plots.py      frontier.png (score against KL), scores.png, differences.png
    report.py     report.md, report.json, the PNGs and the W&B run
    cli.py        the command line
"""
