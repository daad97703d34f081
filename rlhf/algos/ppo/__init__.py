"""PPO for language models (ours: TRL no longer ships one), everything PPO in one package.

    settings.py    Settings: conf/algo/ppo.yaml, with range checks
    loop.py        the training loop: numbered steps rollout -> score -> rewards -> GAE -> update -> log
    math.py        the tensor math: KL-penalised rewards, GAE, clipped losses, whitening, KL controllers
    roles.py       the four roles (policy, reference, reward, value) on one shared base or separate models
    scoring.py     step 2: reference log-probs, values and reward-model scores of a rollout
    optimizer.py   the optimizer hardware.optim names, mapped as the HF Trainer maps it
    checkpoint.py  save / resume the full training state in run_dir/checkpoints/
    sentinel.py    the Goodhart sentinel: each checkpoint scored by an independent judge; algo.keep_best
    sentinel_plot.py  its plot, run_dir/sentinel.png: proxy and independent score against KL

Sampling (step 1) is shared with evaluation and lives in rlhf/modeling/generation.py; the held-out evaluation
before and after training (reward model, gold judge, KL) is shared with GRPO and RLOO: rlhf/modeling/held_out.py.
"""

from rlhf.algos.ppo.loop import train
from rlhf.algos.ppo.settings import Settings

__all__ = ["Settings", "train"]
