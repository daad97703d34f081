#!/usr/bin/env bash
# Issue 18 lever: batch 32 x 6 iterations x 4 minibatches against 16 x 12 x 2 (equal episodes and optimizer steps), same rm.
source "$(dirname "$0")/levers_env.sh"   # strict mode, the repository root, D, A, P
for s in 0 1 2; do
  [ -f $D/batch32_$s/summary.json ] || $P train.py algo=ppo seed=$s algo.learning_rate=5e-4 algo.batch_size=32 algo.iterations=6 \
     algo.num_mini_batches=4 algo.reward_model=$A/rm hydra.run.dir=$D/batch32_$s
done
echo ALL DONE
