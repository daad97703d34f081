#!/usr/bin/env bash
# Issue 18: the new default learning rate (2.5e-4) on seeds the lr study did not see (SEEDS, default "3 4"), same
# rm; then evaluate.py of base and those runs on the same 256 prompts (gold judge): does each seed's gain exclude 0?
source "$(dirname "$0")/levers_env.sh"   # strict mode, the repository root, D, A, P
SEEDS=${SEEDS:-3 4}
[ -f $D/rm/summary.json ] || bash docs/results/2026-12-03-ppo-sft/run_sft_lever.sh   # the rm
policies=()
for s in $SEEDS; do
  [ -f $D/lr25e4_$s/summary.json ] || $P train.py algo=ppo seed=$s algo.learning_rate=2.5e-4 algo.reward_model=$A/rm hydra.run.dir=$D/lr25e4_$s
  policies+=("+policies.ppo_lr25e4_s$s=$A/lr25e4_$s")
done
E=$D/eval_lr_confirm_${SEEDS// /_}
[ -f $E/results.json ] || $P evaluate.py policies.dpo=null policies.ppo=null "${policies[@]}" \
  judge=$A/rm evaluation.allow_proxy_judge=true evaluation.n_pairs=0 hydra.run.dir=$E
echo ALL DONE
