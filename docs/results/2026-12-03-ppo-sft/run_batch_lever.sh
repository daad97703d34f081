#!/usr/bin/env bash
# Issue 18 lever: batch 32 x 6 iterations x 4 minibatches against 16 x 12 x 2 (equal episodes and optimizer steps), same rm.
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
D=multirun_sweeps/levers-2026-12-03-sft
A=$PWD/$D   # absolute: the runs read these paths from their configs
export WANDB_MODE=offline
for s in 0 1 2; do
  [ -f $D/batch32_$s/summary.json ] || .venv/bin/python train.py algo=ppo seed=$s algo.learning_rate=5e-4 algo.batch_size=32 algo.iterations=6 \
     algo.num_mini_batches=4 algo.reward_model=$A/rm hydra.run.dir=$D/batch32_$s
done
echo ALL DONE
