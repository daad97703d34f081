"""Helpers of our PPO loop (rlhf/algos/ppo.py), one job per module.

    roles.py       the four roles (policy, reference, reward, value) on one shared base or separate models
    rollout.py     prompts -> sampled responses -> per-token log-probs, values and reward-model scores
    evaluation.py  held-out evaluation before and after training (reward model, gold judge, KL)
    checkpoint.py  save / resume the full training state in run_dir/checkpoints/

The tensor math (KL rewards, GAE, clipped losses, KL controllers) is in rlhf/ppo_math.py.
"""
