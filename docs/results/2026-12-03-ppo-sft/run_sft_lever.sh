#!/usr/bin/env bash
# Issue 18 lever: PPO from the SFT adapter against PPO from base, 3 paired seeds, one rm; then evaluate.py on 256 prompts.
source "$(dirname "$0")/levers_env.sh"   # strict mode, the repository root, D, A, P
[ -f $D/rm/summary.json ] || $P train.py algo=rm seed=0 hydra.run.dir=$D/rm
[ -f $D/sft/summary.json ] || $P train.py algo=sft seed=0 hydra.run.dir=$D/sft
for s in 0 1 2; do
  [ -f $D/sft_$s/summary.json ] || $P train.py algo=ppo seed=$s algo.learning_rate=5e-4 algo.init_adapter=$A/sft algo.reward_model=$A/rm hydra.run.dir=$D/sft_$s
  [ -f $D/base_$s/summary.json ] || $P train.py algo=ppo seed=$s algo.learning_rate=5e-4 algo.reward_model=$A/rm hydra.run.dir=$D/base_$s
done
[ -f $D/eval/results.json ] || $P evaluate.py policies.dpo=null policies.ppo=null +policies.sft=$A/sft \
  +policies.ppo_s0=$A/base_0 +policies.ppo_s1=$A/base_1 +policies.ppo_s2=$A/base_2 \
  +policies.ppo_sft_s0=$A/sft_0 +policies.ppo_sft_s1=$A/sft_1 +policies.ppo_sft_s2=$A/sft_2 \
  judge=$A/rm evaluation.allow_proxy_judge=true evaluation.n_pairs=0 hydra.run.dir=$D/eval
echo ALL DONE
