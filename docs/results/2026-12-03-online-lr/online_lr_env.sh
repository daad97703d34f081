# Sourced by this folder's run_*.sh with the tournament directory as $1: strict mode, T (that tournament, absolute),
# the repository root as the working directory, and where the runs go.
set -euo pipefail
T=$(realpath "$1")   # a finished tournament: rm/, grpo/, rloo/ with seed_0..2
cd "$(dirname "$0")/../../.."   # the repository root ($0: the script that sources this file)
D=multirun_sweeps/online-lr-2026-12-03
A=$PWD/$D   # absolute: the runs read these paths from their configs
P=.venv/bin/python
export WANDB_MODE=offline
