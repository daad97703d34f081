#!/usr/bin/env bash
# Issue 18 lever: the reward model initialised from SFT (N+: policy and rm both from the SFT model). PPO from the SFT
# adapter scored by an rm trained from it, against PPO from the SFT adapter scored by the rm from base (sft_0..2 of
# run_sft_lever.sh), 3 paired seeds, read by bench.ppo_levers; with EVALUATE=1, evaluate.py of base and both arms on 256 prompts.
# share_base=false: the rm from SFT sits on another base (the SFT adapter merged), so PPO keeps it as its own model;
# the math is the shared layout's (tests/algos/ppo/test_loop.py), only time and memory differ. learning_rate=5e-4: the
# rate of the sft_* runs it is paired with (the default until the lr study of run_lr_lever.sh).
source "$(dirname "$0")/levers_env.sh"   # strict mode, the repository root, D, A, P
[ -f $D/sft_2/summary.json ] || bash docs/results/2026-12-03-ppo-sft/run_sft_lever.sh   # rm, sft and the sft_* arm
[ -f $D/rm_sft/summary.json ] || $P train.py algo=rm seed=0 algo.init_adapter=$A/sft hydra.run.dir=$D/rm_sft
for s in 0 1 2; do
  [ -f $D/rmsft_$s/summary.json ] || $P train.py algo=ppo seed=$s algo.init_adapter=$A/sft algo.reward_model=$A/rm_sft \
     algo.share_base=false algo.learning_rate=5e-4 hydra.run.dir=$D/rmsft_$s
done
if [ "${EVALUATE:-0}" = 1 ]; then   # EVALUATE=1: also judge both arms with base on 256 prompts (~13 min here)
  [ -f $D/eval_rm_sft/results.json ] || $P evaluate.py policies.dpo=null policies.ppo=null \
    +policies.ppo_sft_s0=$A/sft_0 +policies.ppo_sft_s1=$A/sft_1 +policies.ppo_sft_s2=$A/sft_2 \
    +policies.ppo_rmsft_s0=$A/rmsft_0 +policies.ppo_rmsft_s1=$A/rmsft_1 +policies.ppo_rmsft_s2=$A/rmsft_2 \
    judge=$A/rm evaluation.allow_proxy_judge=true evaluation.n_pairs=0 hydra.run.dir=$D/eval_rm_sft
fi
echo ALL DONE
