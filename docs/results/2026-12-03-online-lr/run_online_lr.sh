#!/usr/bin/env bash
# Issue 19 lever: GRPO's and RLOO's learning rate, 2.5e-4 (PPO's default since issue 18) against their 5e-4, paired
# by seed with a finished tournament's runs: seed s trains against that tournament's rm seed_s, as its grpo/rloo
# seed_s did; then one evaluate.py of base and both rates of both arms on the same 256 prompts, read by
#   python -m bench.eval_seeds <this folder's eval_online_lr> --baseline grpo   (and --baseline rloo)
# Usage (from anywhere): bash docs/results/2026-12-03-online-lr/run_online_lr.sh multirun_sweeps/tournament/<stamp>
# with a tournament run as `python -m rlhf.tournament --seeds 3 --arms dpo,ppo,grpo,rloo hardware=auto`.
source "$(dirname "$0")/online_lr_env.sh"   # strict mode, T, the repository root, D, A, P
for arm in grpo rloo; do
  for s in 0 1 2; do
    [ -f $D/${arm}_lr25e4_$s/summary.json ] || $P train.py algo=$arm seed=$s algo.learning_rate=2.5e-4 hardware=auto \
      algo.reward_model=$T/rm/seed_$s hydra.run.dir=$D/${arm}_lr25e4_$s
  done
done
[ -f $D/eval_online_lr/results.json ] || $P evaluate.py policies.dpo=null policies.ppo=null hardware=auto \
  +policies.grpo_s0=$T/grpo/seed_0 +policies.grpo_s1=$T/grpo/seed_1 +policies.grpo_s2=$T/grpo/seed_2 \
  +policies.grpo_lr25e4_s0=$A/grpo_lr25e4_0 +policies.grpo_lr25e4_s1=$A/grpo_lr25e4_1 +policies.grpo_lr25e4_s2=$A/grpo_lr25e4_2 \
  +policies.rloo_s0=$T/rloo/seed_0 +policies.rloo_s1=$T/rloo/seed_1 +policies.rloo_s2=$T/rloo/seed_2 \
  +policies.rloo_lr25e4_s0=$A/rloo_lr25e4_0 +policies.rloo_lr25e4_s1=$A/rloo_lr25e4_1 +policies.rloo_lr25e4_s2=$A/rloo_lr25e4_2 \
  judge=$T/rm/seed_0 evaluation.allow_proxy_judge=true evaluation.n_pairs=0 hydra.run.dir=$D/eval_online_lr
echo ALL DONE
