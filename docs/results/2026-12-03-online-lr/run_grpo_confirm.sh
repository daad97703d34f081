#!/usr/bin/env bash
# Issue 19: GRPO's new default rate (2.5e-4) on seeds neither the tournament nor run_online_lr.sh saw (SEEDS, default
# "3 4"), against the tournament's rm seed_0; then evaluate.py of base and those runs on the same 256 prompts (gold
# judge): does each seed's gain exclude 0?  Read by: python -m bench.eval_seeds <this folder's eval_grpo_confirm_3_4>
# Usage: bash docs/results/2026-12-03-online-lr/run_grpo_confirm.sh multirun_sweeps/tournament/<stamp>
source "$(dirname "$0")/online_lr_env.sh"   # strict mode, T, the repository root, D, A, P
SEEDS=${SEEDS:-3 4}
policies=()
for s in $SEEDS; do
  [ -f $D/grpo_lr25e4_$s/summary.json ] || $P train.py algo=grpo seed=$s algo.learning_rate=2.5e-4 hardware=auto \
    algo.reward_model=$T/rm/seed_0 hydra.run.dir=$D/grpo_lr25e4_$s
  policies+=("+policies.grpo_lr25e4_s$s=$A/grpo_lr25e4_$s")
done
E=$D/eval_grpo_confirm_${SEEDS// /_}
[ -f $E/results.json ] || $P evaluate.py policies.dpo=null policies.ppo=null hardware=auto "${policies[@]}" \
  judge=$T/rm/seed_0 evaluation.allow_proxy_judge=true evaluation.n_pairs=0 hydra.run.dir=$E
echo ALL DONE
