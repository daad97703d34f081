# Sourced by this folder's run_*.sh: strict mode, the repository root as the working directory, and where the runs go.
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root ($0: the script that sources this file)
D=multirun_sweeps/levers-2026-12-03-sft
A=$PWD/$D   # absolute: the runs read these paths from their configs
P=.venv/bin/python
export WANDB_MODE=offline
