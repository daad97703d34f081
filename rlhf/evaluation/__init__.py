"""Compare policies (base, DPO, PPO, GRPO, RLOO, SFT, sweep jobs) on held-out prompts: `python evaluate.py`.

metrics.py   pure functions: bootstrap interval, win rate (ties = 1/2), accuracies, distinct-n, KL summary, hacking flag
policies.py  resolve the compared policies and the judge; one base model with every adapter attached by name
run.py       the comparison: sample, judge, pair log-probs, metrics -> results.json / results.md / plots / W&B
tables.py    results.md, the W&B tables
plots.py     the PNG plots
"""
