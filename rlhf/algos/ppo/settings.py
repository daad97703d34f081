"""PPO's settings: conf/algo/ppo.yaml (every default and its reason lives there), with range checks."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.algos.ppo.math import KL_ESTIMATORS
from rlhf.algos.ppo.roles import VALUE_MODELS
from rlhf.config import check, check_choice, check_init_adapter_value
from rlhf.errors import ConfigError
from rlhf.modeling.generation import Sampling

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


@dataclass(frozen=True)
class Settings:
    """conf/algo/ppo.yaml (every default and its reason lives there)."""

    name: str
    optimized_metric: str
    # where the roles come from
    reward_model: str | None
    init_adapter: str | None
    share_base: bool
    value_model: str
    # schedule and optimizer
    iterations: int
    batch_size: int
    num_mini_batches: int
    ppo_epochs: int
    learning_rate: float
    lr_scheduler_type: str
    warmup_ratio: float
    adam_eps: float
    max_grad_norm: float
    # 1. rollout
    sampling: Sampling
    rollout_chunk_size: int
    # 2.-3. score and per-token rewards
    missing_eos_penalty: float | None
    reward_clip: float | None
    whiten_scores: bool
    kl_coef: float
    kl_estimator: str
    adaptive_kl: bool
    kl_target: float | None
    kl_horizon: float | None
    # 4. advantages
    gamma: float
    lam: float
    whiten_rewards: bool
    whiten_advantages: bool
    # 5. losses
    cliprange: float
    cliprange_value: float
    vf_coef: float
    # 6. logging, checkpoints, evaluation
    sample_every: int
    sample_rows: int
    save_every: int
    keep_checkpoints: int
    eval_prompts: int
    eval_greedy: bool
    kl_bound: float
    # 7. Goodhart sentinel (rlhf/algos/ppo/sentinel.py)
    sentinel_prompts: int
    sentinel_judge: str
    keep_best: bool

    def __post_init__(self):
        check_init_adapter_value(self.init_adapter)
        check_choice("algo.value_model", self.value_model, VALUE_MODELS)
        check(self.iterations >= 1, "algo.iterations", self.iterations, "must be >= 1")
        check(
            self.batch_size >= 2,
            "algo.batch_size",
            self.batch_size,
            "must be >= 2 prompts per iteration (whitening needs two)",
        )
        check(self.num_mini_batches >= 1, "algo.num_mini_batches", self.num_mini_batches, "must be >= 1")
        if self.batch_size % self.num_mini_batches:
            raise ConfigError(
                f"algo.batch_size={self.batch_size} is not divisible by algo.num_mini_batches={self.num_mini_batches}: "
                f"choose a batch size that is a multiple of {self.num_mini_batches}, "
                f"or a number of minibatches that divides {self.batch_size}"
            )
        check(self.ppo_epochs >= 1, "algo.ppo_epochs", self.ppo_epochs, "must be >= 1")
        check(
            0 < self.learning_rate < 1,
            "algo.learning_rate",
            self.learning_rate,
            "must be in (0, 1), e.g. 1e-4 for LoRA",
        )
        check_choice("algo.lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        check(0 <= self.warmup_ratio < 1, "algo.warmup_ratio", self.warmup_ratio, "must be in [0, 1)")
        check(self.adam_eps > 0, "algo.adam_eps", self.adam_eps, "must be > 0")
        check(self.max_grad_norm > 0, "algo.max_grad_norm", self.max_grad_norm, "must be > 0")
        self.sampling.check("algo.sampling")
        check(
            self.rollout_chunk_size >= 1,
            "algo.rollout_chunk_size",
            self.rollout_chunk_size,
            "must be >= 1 prompt per generate() call, e.g. 16 on CPU (lower it if the rollout runs out of memory)",
        )
        if self.missing_eos_penalty is not None:
            check(
                self.missing_eos_penalty >= 0,
                "algo.missing_eos_penalty",
                self.missing_eos_penalty,
                "must be >= 0 (it is subtracted) or null",
            )
        if self.reward_clip is not None:
            check(self.reward_clip > 0, "algo.reward_clip", self.reward_clip, "must be > 0 or null")
        check(self.kl_coef >= 0, "algo.kl_coef", self.kl_coef, "must be >= 0")
        check_choice("algo.kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        if self.adaptive_kl:
            check(
                self.kl_target is not None and self.kl_target > 0,
                "algo.kl_target",
                self.kl_target,
                "must be > 0 with algo.adaptive_kl=true",
            )
            check(
                self.kl_horizon is not None and self.kl_horizon > 0,
                "algo.kl_horizon",
                self.kl_horizon,
                "must be > 0 with algo.adaptive_kl=true",
            )
        check(0 <= self.gamma <= 1, "algo.gamma", self.gamma, "must be in [0, 1]")
        check(0 <= self.lam <= 1, "algo.lam", self.lam, "must be in [0, 1]")
        check(self.cliprange > 0, "algo.cliprange", self.cliprange, "must be > 0, e.g. 0.2")
        check(self.cliprange_value > 0, "algo.cliprange_value", self.cliprange_value, "must be > 0, e.g. 0.2")
        check(self.vf_coef >= 0, "algo.vf_coef", self.vf_coef, "must be >= 0")
        check(self.sample_every >= 1, "algo.sample_every", self.sample_every, "must be >= 1")
        check(self.sample_rows >= 1, "algo.sample_rows", self.sample_rows, "must be >= 1")
        check(self.save_every >= 1, "algo.save_every", self.save_every, "must be >= 1")
        check(self.keep_checkpoints >= 1, "algo.keep_checkpoints", self.keep_checkpoints, "must be >= 1")
        check(self.eval_prompts >= 1, "algo.eval_prompts", self.eval_prompts, "must be >= 1")
        check(self.kl_bound > 0, "algo.kl_bound", self.kl_bound, "must be > 0 (nats per response)")
        check(self.sentinel_prompts >= 0, "algo.sentinel_prompts", self.sentinel_prompts, "must be >= 0 (0 = off)")
        if self.keep_best and not self.sentinel_prompts:
            raise ConfigError(
                "algo.keep_best=true needs algo.sentinel_prompts > 0 (the sentinel's scores pick the checkpoint to "
                "keep): set algo.sentinel_prompts=16, or algo.keep_best=false"
            )
