#!/usr/bin/env bash
# Issue 18 lever: PPO's learning rate, 2.5e-4 and 1e-3 against the default 5e-4 (base_0..2 of run_sft_lever.sh),
# 3 paired seeds, one rm; then evaluate.py of base, the default and both arms on the same 256 prompts.
source "$(dirname "$0")/levers_env.sh"   # strict mode, the repository root, D, A, P
[ -f $D/base_2/summary.json ] || bash docs/results/2026-12-03-ppo-sft/run_sft_lever.sh   # the rm and the default arm
for s in 0 1 2; do
  [ -f $D/lr1e3_$s/summary.json ] || $P train.py algo=ppo seed=$s algo.learning_rate=1e-3 algo.reward_model=$A/rm hydra.run.dir=$D/lr1e3_$s
done
for s in 0 1 2; do
  [ -f $D/lr25e4_$s/summary.json ] || $P train.py algo=ppo seed=$s algo.learning_rate=2.5e-4 algo.reward_model=$A/rm hydra.run.dir=$D/lr25e4_$s
done
[ -f $D/eval_lr/results.json ] || $P evaluate.py policies.dpo=null policies.ppo=null \
  +policies.ppo_s0=$A/base_0 +policies.ppo_s1=$A/base_1 +policies.ppo_s2=$A/base_2 \
  +policies.ppo_lr1e3_s0=$A/lr1e3_0 +policies.ppo_lr1e3_s1=$A/lr1e3_1 +policies.ppo_lr1e3_s2=$A/lr1e3_2 \
  +policies.ppo_lr25e4_s0=$A/lr25e4_0 +policies.ppo_lr25e4_s1=$A/lr25e4_1 +policies.ppo_lr25e4_s2=$A/lr25e4_2 \
  judge=$A/rm evaluation.allow_proxy_judge=true evaluation.n_pairs=0 hydra.run.dir=$D/eval_lr
echo ALL DONE
