#!/usr/bin/env bash
# GPU smoke test (one command, under 10 minutes on one GPU): rm, dpo, ppo and evaluate for a few steps each on
# the embedded SmolLM2 with hardware=gpu_24gb (4-bit QLoRA) and hardware=a100_80gb (bf16), then the memory
# planner's predicted peak against torch.cuda.max_memory_allocated (summary.json's peak_cuda_mb) per run.
#   bash bench/gpu_smoke.sh [OUT_DIR]       (default /tmp/gpu_smoke; needs a CUDA GPU and `make install`)
# Prints one line per stage and a table; exits non-zero at the first failed stage. Never part of CI.
# Covered on the CPU already (so a first GPU run tests only what CUDA adds): every gpu_24gb stage below, and grpo,
# rloo, judge, sft, the sentinel and resume after SIGKILL, run the same 4-bit path on the CPU in CI
# (tests/test_qlora_cpu.py, hardware=gpu_24gb hardware.device=cpu); a100_80gb's bf16 weights and autocast run as
# hardware=cpu_bf16 (tests/test_hardware_selection.py). Left to this script: bitsandbytes' CUDA kernels, the CUDA
# caching allocator and context (the planner's RESERVE_GIB, unchecked), peak_cuda_mb against the planner, and the
# K/V dtype of a 4-bit model under CUDA autocast (the planner counts fp32: the check right below).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-/tmp/gpu_smoke}
rm -rf "$OUT" && mkdir -p "$OUT"
"$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA GPU"; print("gpu:", torch.cuda.get_device_name(0))'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# The K/V dtype of a 4-bit model under bf16 autocast on CUDA, against the 4 bytes the planner counts.
"$PY" - <<'EOF'
import torch
from bench.common import compose
from rlhf.config import HardwareSettings, ModelSettings, from_node
from rlhf.modeling.models import load_causal_lm, load_tokenizer, model_directory
from rlhf.plan.memory import Precision
cfg = compose(["model=tiny_llama", "hardware=gpu_24gb", "logger=none"])
model, hw = from_node(ModelSettings, cfg.model, "model"), from_node(HardwareSettings, cfg.hardware, "hardware")
path = model_directory(model)
lm = load_causal_lm(path, model, hw, load_tokenizer(path, model))
with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
    keys = lm(torch.tensor([[1, 2, 3]], device="cuda"), use_cache=True).past_key_values.layers[0].keys
print(f"4-bit K/V under CUDA autocast: {keys.dtype}, {keys.element_size()} bytes; the planner: {Precision.of(hw).gen}")
EOF

# A few steps each: enough to run every phase (rollout, scoring, update, evaluation) and reach its peak.
COMMON="logger=none dataset.n_train=256 dataset.n_test=64"
RM="algo.max_steps=8 algo.save_every=4"
DPO="algo.max_steps=8 algo.save_every=4"
PPO="algo.iterations=2 algo.save_every=2 algo.batch_size=32 algo.rollout_chunk_size=16 algo.eval_prompts=32"
EVAL="evaluation.n_prompts=32"

for hw in gpu_24gb a100_80gb; do
  root="$OUT/$hw"
  for stage in rm dpo ppo; do
    case $stage in rm) extra=$RM ;; dpo) extra=$DPO ;; ppo) extra=$PPO ;; esac
    start=$(date +%s)
    "$PY" train.py algo=$stage hardware=$hw $COMMON $extra outputs_root="$root" > "$OUT/$hw-$stage.log" 2>&1 \
      || { echo "FAILED: $hw $stage (log: $OUT/$hw-$stage.log)"; tail -20 "$OUT/$hw-$stage.log"; exit 1; }
    echo "$hw $stage: $(( $(date +%s) - start )) s"
  done
  start=$(date +%s)
  "$PY" evaluate.py hardware=$hw outputs_root="$root" $EVAL logger=none \
    hydra.run.dir="$root/evaluate" > "$OUT/$hw-evaluate.log" 2>&1 \
    || { echo "FAILED: $hw evaluate (log: $OUT/$hw-evaluate.log)"; tail -20 "$OUT/$hw-evaluate.log"; exit 1; }
  echo "$hw evaluate: $(( $(date +%s) - start )) s"
done

# Two processes under NCCL (2 GPUs or more; skipped on one): a Trainer algorithm and PPO, a few steps each. The CPU
# tests run the same launches over gloo (tests/run/test_distributed.py); NCCL adds CUDA-only collectives.
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  for stage in dpo ppo; do
    case $stage in dpo) extra=$DPO ;; ppo) extra="$PPO algo.reward_model=$OUT/a100_80gb/latest/rm" ;; esac
    start=$(date +%s)
    "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 train.py algo=$stage hardware=a100_80gb $COMMON \
      $extra outputs_root="$OUT/nccl" > "$OUT/nccl-$stage.log" 2>&1 \
      || { echo "FAILED: nccl $stage (log: $OUT/nccl-$stage.log)"; tail -20 "$OUT/nccl-$stage.log"; exit 1; }
    echo "nccl x2 $stage: $(( $(date +%s) - start )) s"
  done
else
  echo "nccl x2: skipped (one GPU)"
fi

# Predicted (python -m rlhf.plan on each run's saved config) against measured peaks.
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
from omegaconf import OmegaConf
from rlhf.plan.fits import plan

print(f"{'run':<22} {'predicted GiB':>14} {'measured GiB':>13} {'ratio':>6}")
for summary_path in sorted(Path(sys.argv[1]).glob("*/*/*/summary.json")):
    run = summary_path.parent
    summary = json.loads(summary_path.read_text())
    measured = summary.get("peak_cuda_mb")
    if summary.get("algo") not in ("rm", "dpo", "ppo") or measured is None:
        continue
    predicted = max(p.peak for p in plan(OmegaConf.load(run / ".hydra" / "config.yaml")).phases) / 2**30
    name = f"{run.parts[-3]}/{summary['algo']}"
    print(f"{name:<22} {predicted:>14.2f} {measured / 1024:>13.2f} {predicted / (measured / 1024):>6.2f}")
EOF
