"""What the critic-free online arms (algo=grpo, algo=rloo) share: TRL 1.16's GRPOTrainer / RLOOTrainer run on a
LoRA policy against our finished reward model, with PPO's scoring rule and PPO's held-out evaluation.

    Settings       the knobs both arms have (conf/algo/grpo.yaml, rloo.yaml), with range checks
    RewardModel    the finished rm run, scoring conversations as PPO's reward role does
    RewardFunction what TRL calls with each rollout: reward-model score minus the missing-EOS penalty, and the
                   rollout's raw score, EOS rate and gold score (hh_synthetic) logged as PPO logs them
    PolicyView     the trained policy and its reference seen through rlhf/modeling/generation.py's interface
    train          build -> start evaluation -> TRL's trainer (run_trainer: checkpoints, resume, signals) ->
                   final evaluation -> adapter/ and the summary

One rollout = ``batch_size`` completions: ``batch_size / num_generations`` training prompts, each answered
``num_generations`` times (one group). TRL splits it into ``num_mini_batches`` optimizer steps and passes over
it ``num_iterations`` times, so a rollout is ``num_mini_batches * num_iterations`` optimizer steps (TRL's
``generation_batch_size`` = batch_size, ``steps_per_generation`` = micro batches per pass).

Scoring as PPO scores (rlhf/algos/ppo/loop.py, steps 1-2):
- the prompt is the conversation cut to ``sampling.max_prompt_length`` tokens by whole turns, its end kept (the
  dataset holds the cut prompts: rlhf/modeling/generation.py cut_prompts, the cut of PPO, DPO and SFT), rendered
  with the policy tokenizer's chat template and the assistant turn opened (TRL tokenizes it as
  generation.encode_prompts does);
- sampling stops at the tokenizer's EOS (load_causal_lm sets the model's generation EOS to it), softmax(logits /
  temperature) with top_k / top_p;
- the reward model reads the cut prompt the policy saw + the response (TRL passes the dataset's prompt messages
  and the decoded response, less the template's separator: generation.response_content), rendered with the rm
  run's chat template, cut to the rm run's ``algo.max_length`` keeping the end
  (rlhf/modeling/reward_scoring.py score_conversations);
- a response without EOS (cut at ``max_new_tokens``) loses ``missing_eos_penalty``.

The reward model is a second, frozen model (load_reward_run), on whatever base the rm run used; PPO's
``share_base`` (the reward adapter on the policy's own base) is not offered here.

The held-out evaluation before and after training is PPO's (rlhf/modeling/held_out.py): rm_score, gold_score,
kl, length and eos_rate on the same seeded draws, read off the PolicyView; the log-prob forwards and the reward
model take ``hardware.micro_batch_size`` sequences at a time, generation ``batch_size`` prompts per call.
"""

from __future__ import annotations

import json
import logging
import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from types import SimpleNamespace

import torch
from datasets import Dataset
from peft import LoraConfig, PeftConfig
from trl.trainer.utils import disable_dropout_in_model

from rlhf.algos.hf_trainer.checkpoints import record_init_adapter, start_adapter
from rlhf.algos.hf_trainer.loop import resume_point, run_trainer
from rlhf.algos.hf_trainer.settings import common_training_args
from rlhf.config import check, check_choice, check_init_adapter_value
from rlhf.data.gold_judge import gold_score_batch
from rlhf.errors import ConfigError
from rlhf.modeling.generation import Sampling, cut_prompts, decode, response_content, response_separator
from rlhf.modeling.held_out import change_summary, evaluate, read_start_records
from rlhf.modeling.models import load_adapter, load_causal_lm, load_reward_run, lora_config, place
from rlhf.modeling.reward_scoring import score_conversations
from rlhf.modeling.token_math import response_logits
from rlhf.run import costs, distributed
from rlhf.run.job import Job
from rlhf.run.rundir import (
    REWARD_ALGOS,
    FinishedRun,
    finished_run,
    truncate_jsonl,
    write_json_atomic,
)
from rlhf.run.scorers import pin_scorers
from rlhf.run.tracking import TrackerCallback

__all__ = [
    "Settings",
    "RewardModel",
    "RewardFunction",
    "PolicyView",
    "Policy",
    "reward_model_run",
    "build_policy",
    "make_trainer",
    "train",
]

log = logging.getLogger(__name__)

EVAL_SAMPLES = "eval_samples.jsonl"  # as PPO's: one row per held-out prompt, at the start and at the end
START_EVAL = "start_eval.json"  # the start evaluation's metrics, read back by a resumed run
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


# --------------------------------------------------------------------------- settings


def _multiple(of: int, near: int) -> int:
    """The multiple of ``of`` nearest ``near`` (at least ``of``): the example in a divisibility error."""
    return of * max(1, round(near / of))


@dataclass(frozen=True)
class Settings:
    """The knobs both online arms have; each arm's Settings adds its loss's own (every default and its source
    lives in conf/algo/grpo.yaml and rloo.yaml)."""

    name: str
    optimized_metric: str
    # where the policy, reference and reward come from
    reward_model: str | None
    init_adapter: str | None
    # schedule and optimizer
    max_steps: int
    batch_size: int
    num_generations: int
    num_mini_batches: int
    num_iterations: int
    learning_rate: float
    lr_scheduler_type: str
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    # rollout and reward
    sampling: Sampling
    missing_eos_penalty: float | None
    mask_truncated_completions: bool
    # the clipped policy loss and the KL to the reference
    beta: float
    epsilon: float
    # logging, checkpoints, evaluation
    logging_steps: int
    sample_every: int
    sample_rows: int
    save_every: int
    keep_checkpoints: int
    eval_prompts: int
    eval_greedy: bool
    kl_bound: float

    def __post_init__(self):
        check_init_adapter_value(self.init_adapter)
        check(
            self.num_generations >= 2,
            "algo.num_generations",
            self.num_generations,
            "must be >= 2 completions per prompt: the baseline of each completion is the rest of its group",
        )
        check(self.batch_size >= 1, "algo.batch_size", self.batch_size, "must be >= 1 completions per rollout")
        if self.batch_size % self.num_generations:
            example = _multiple(self.num_generations, self.batch_size)
            raise ConfigError(
                f"algo.batch_size={self.batch_size} is not divisible by algo.num_generations={self.num_generations}: "
                f"a rollout holds whole groups of {self.num_generations} completions of one prompt; choose a batch "
                f"size that is a multiple of {self.num_generations} (e.g. {example}), "
                f"or a num_generations that divides {self.batch_size}"
            )
        check(self.num_mini_batches >= 1, "algo.num_mini_batches", self.num_mini_batches, "must be >= 1")
        if self.batch_size % self.num_mini_batches:
            raise ConfigError(
                f"algo.batch_size={self.batch_size} is not divisible by algo.num_mini_batches={self.num_mini_batches}: "
                f"choose a batch size that is a multiple of {self.num_mini_batches}, "
                f"or a number of minibatches that divides {self.batch_size}"
            )
        check(self.num_iterations >= 1, "algo.num_iterations", self.num_iterations, "must be >= 1 passes per rollout")
        check(self.max_steps >= 1, "algo.max_steps", self.max_steps, "must be >= 1 optimizer steps")
        check(self.save_every >= 1, "algo.save_every", self.save_every, "must be >= 1 optimizer steps")
        self._check_whole_rollouts("algo.max_steps", self.max_steps, "the run trains on whole rollouts")
        self._check_whole_rollouts(
            "algo.save_every", self.save_every, "a checkpoint must fall between rollouts, so a resume continues exactly"
        )
        check(
            0 < self.learning_rate < 1,
            "algo.learning_rate",
            self.learning_rate,
            "must be in (0, 1), e.g. 5e-4 for LoRA",
        )
        check_choice("algo.lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        check(0 <= self.warmup_ratio < 1, "algo.warmup_ratio", self.warmup_ratio, "must be in [0, 1)")
        check(self.weight_decay >= 0, "algo.weight_decay", self.weight_decay, "must be >= 0")
        check(self.max_grad_norm > 0, "algo.max_grad_norm", self.max_grad_norm, "must be > 0")
        self.sampling.check("algo.sampling")
        if self.missing_eos_penalty is not None:
            check(
                self.missing_eos_penalty >= 0,
                "algo.missing_eos_penalty",
                self.missing_eos_penalty,
                "must be >= 0 (it is subtracted) or null",
            )
        check(self.beta >= 0, "algo.beta", self.beta, "must be >= 0 (0 = no KL term and no reference forward)")
        check(self.epsilon > 0, "algo.epsilon", self.epsilon, "must be > 0, e.g. 0.2")
        check(self.logging_steps >= 1, "algo.logging_steps", self.logging_steps, "must be >= 1")
        check(self.sample_every >= 1, "algo.sample_every", self.sample_every, "must be >= 1 rollouts")
        check(self.sample_rows >= 1, "algo.sample_rows", self.sample_rows, "must be >= 1")
        check(self.keep_checkpoints >= 1, "algo.keep_checkpoints", self.keep_checkpoints, "must be >= 1")
        check(self.eval_prompts >= 1, "algo.eval_prompts", self.eval_prompts, "must be >= 1")
        check(self.kl_bound > 0, "algo.kl_bound", self.kl_bound, "must be > 0 (nats per response)")

    def _check_whole_rollouts(self, key: str, value: int, why: str) -> None:
        per_rollout = self.steps_per_rollout
        if value % per_rollout:
            raise ConfigError(
                f"{key}={value} is not a multiple of the {per_rollout} optimizer steps of one rollout "
                f"(algo.num_mini_batches={self.num_mini_batches} x algo.num_iterations={self.num_iterations}): "
                f"{why}; choose a multiple of {per_rollout} (e.g. {_multiple(per_rollout, value)})"
            )

    @property
    def steps_per_rollout(self) -> int:
        """Optimizer steps one rollout is used for."""
        return self.num_mini_batches * self.num_iterations

    @property
    def minibatch_size(self) -> int:
        """Completions per optimizer step."""
        return self.batch_size // self.num_mini_batches


def training_args(settings: Settings, job: Job) -> dict:
    """The TrainingArguments every Trainer-based algorithm shares (rlhf/algos/hf_trainer/settings.py), for one
    optimizer step of ``settings.minibatch_size`` completions, and the rollout and loss arguments both TRL
    configs share."""
    shared = SimpleNamespace(
        **{
            **{f.name: getattr(settings, f.name) for f in fields(settings)},
            "batch_size": settings.minibatch_size,  # the optimizer batch; micro batches come from hardware
            "num_train_epochs": 1,  # unused: max_steps >= 1 always sets the length
        }
    )
    # common_training_args names algo.batch_size in its divisibility error; say what that batch is here
    minibatch = "the minibatch (algo.batch_size / algo.num_mini_batches)"
    job.hardware.accumulation_steps(settings.minibatch_size, minibatch, distributed.world_size())
    sampling = settings.sampling
    return dict(
        **common_training_args(shared, job.hardware, job.run_dir, job.seed),
        # one rollout of batch_size completions, generated at once, serves num_mini_batches optimizer steps
        generation_batch_size=settings.batch_size,
        num_generations=settings.num_generations,
        num_iterations=settings.num_iterations,
        max_completion_length=sampling.max_new_tokens,
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        beta=settings.beta,
        epsilon=settings.epsilon,
        mask_truncated_completions=settings.mask_truncated_completions,
        disable_dropout=True,  # as PPO: the ratio and the reference compare like with like (LoRA dropout too)
        log_completions=False,  # TRL would print them with rich; the sample table goes to our Tracker
    )


# --------------------------------------------------------------------------- reward


def reward_model_run(job: Job, reward_model: str | None) -> FinishedRun:
    """The finished rm run to score with: algo.reward_model, or <outputs_root>/latest/rm (any base: it is
    loaded as its own model)."""
    path = Path(reward_model) if reward_model else job.outputs_root / "latest" / "rm"
    if not path.exists():
        raise ConfigError(
            f"no reward model at {path}: run `python train.py algo=rm` first, "
            "or set algo.reward_model=<rm run directory>"
        )
    return finished_run(path, "algo.reward_model", REWARD_ALGOS)


class RewardModel:
    """The rm run's frozen sequence classifier: ``model(conversations)`` -> scores [N] (float32, CPU), each read at
    the last real token of the conversation rendered with the rm's chat template, cut to the rm run's
    ``algo.max_length`` keeping its end: rlhf/modeling/reward_scoring.py, as PPO scores."""

    def __init__(self, tokenizer, model: torch.nn.Module, max_length: int, batch_size: int, bf16: bool):
        self.tokenizer, self.model, self.max_length, self.batch_size = tokenizer, model, max_length, batch_size
        self.autocast_dtype = torch.bfloat16 if bf16 else None  # PPO's reward role runs under the same autocast

    @classmethod
    @costs.phase("load_model")
    def load(cls, job: Job, run: FinishedRun) -> RewardModel:
        tokenizer, model = load_reward_run(run, job.hardware)
        model.requires_grad_(False)
        return cls(
            tokenizer,
            place(model, job.hardware),
            int(run.config.algo.max_length),
            job.hardware.micro_batch_size,
            job.hardware.bf16,
        )

    def __call__(
        self, conversations: list[list[dict]], batch_size: int | None = None, max_length: int | None = None
    ) -> torch.Tensor:
        device = next(self.model.parameters()).device
        precision = (
            torch.autocast(device.type, dtype=self.autocast_dtype) if self.autocast_dtype is not None else nullcontext()
        )
        with precision:
            scores = score_conversations(
                self.model, self.tokenizer, conversations, batch_size or self.batch_size, max_length or self.max_length
            )
        return scores.float().cpu()


def missing_eos_penalty(scores: torch.Tensor, has_eos: torch.Tensor, penalty: float | None) -> torch.Tensor:
    """scores [N] less ``penalty`` where the response has no EOS (has_eos [N] bool); None = unchanged (PPO's rule)."""
    if penalty is None:
        return scores
    return scores - penalty * (~has_eos).to(scores.dtype)


def _last_user_text(prompt: list[dict]) -> str:
    return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")


class RewardFunction:
    """The reward TRL's trainers call with each rollout: the reward model's score of prompt + response, less
    ``missing_eos_penalty`` for a response that did not end with EOS.

    TRL (1.16, ``_calculate_rewards``) passes ``prompts`` (the dataset's prompt messages: cut as the policy saw
    them, :func:`prompt_dataset`), ``completions`` (``[{"role": "assistant", "content": text}]``, decoded without
    special tokens; ``separator``, the chat template's text before an assistant's content, is taken off its
    front as rlhf/modeling/generation.py does), ``completion_ids`` (the sampled ids, up to and including the
    first EOS) and, as keywords, ``trainer_state`` and ``log_metric``.
    Logged per rollout, as PPO logs them: ``objective/scores`` (raw rm score, before the penalty),
    ``response/eos_rate`` and, with ``with_gold`` (hh_synthetic), ``objective/gold_score``, the gold judge's mean
    score of the rollout; every ``sample_every`` rollouts a table of ``sample_rows`` completions."""

    def __init__(
        self,
        score,
        eos_token_id: int,
        penalty: float | None,
        with_gold: bool,
        tracker=None,
        sample_every: int = 1,
        sample_rows: int = 4,
        steps_per_rollout: int = 1,
        separator: str = "",
    ):
        self.__name__ = "reward_model"  # TRL logs rewards/<name>/mean and /std
        self.score, self.eos_token_id, self.penalty, self.with_gold = score, eos_token_id, penalty, with_gold
        self.tracker, self.sample_every, self.sample_rows = tracker, sample_every, sample_rows
        self.steps_per_rollout, self.separator = steps_per_rollout, separator

    def __call__(self, prompts, completions, completion_ids, trainer_state=None, log_metric=None, **_) -> list[float]:
        texts = [response_content(c[-1]["content"] if isinstance(c, list) else c, self.separator) for c in completions]
        conversations = [list(p) + [{"role": "assistant", "content": t}] for p, t in zip(prompts, texts)]
        scores = self.score(conversations)
        has_eos = torch.tensor([len(ids) > 0 and int(ids[-1]) == self.eos_token_id for ids in completion_ids])
        rewards = missing_eos_penalty(scores, has_eos, self.penalty)
        finite = scores[torch.isfinite(scores)]
        metrics = {
            "objective/scores": finite.mean().item() if len(finite) else math.nan,
            "response/eos_rate": has_eos.float().mean().item(),
        }
        if self.with_gold:
            metrics["objective/gold_score"] = sum(gold_score_batch(prompts, texts)) / len(texts)
        if log_metric is not None:
            for key, value in metrics.items():
                log_metric(key, value)
        self._sample_table(trainer_state, prompts, texts, rewards)
        return rewards.tolist()

    def _sample_table(self, state, prompts, texts, rewards) -> None:
        """A W&B table of the rollout's first completions, every ``sample_every`` rollouts, logged at the first
        step this rollout trains (as PPO logs its table at the iteration that sampled it)."""
        if self.tracker is None or state is None:
            return
        rollout = state.global_step // self.steps_per_rollout + 1
        if rollout % self.sample_every:
            return
        step = state.global_step + 1
        rows = [[step, _last_user_text(p), t, r] for p, t, r in zip(prompts, texts, rewards.tolist())]
        self.tracker.log_table("samples", ["step", "prompt", "response", "reward"], rows[: self.sample_rows], step)


# --------------------------------------------------------------------------- the policy and its reference


@dataclass
class Policy:
    """What the TRL trainer gets: a causal LM wrapped by TRL with ``peft_config`` (a fresh adapter; the reference
    is the base with the adapter disabled), or a PeftModel holding the init adapter as "default" (TRL adds a frozen
    copy named "ref": the reference is the init policy, as DPO's)."""

    model: torch.nn.Module
    peft_config: PeftConfig | None
    reference: str  # how the reference is formed, for the summary
    init_adapter: Path | None = None


@costs.phase("load_model")
def build_policy(job: Job, adapter: Path | None) -> Policy:
    """The policy to train: a fresh LoRA on the base, or ``adapter`` (resolved by start_adapter) trained further."""
    if not job.lora.enabled:
        raise ConfigError(
            f"lora={job.lora.name}: the online arms train a LoRA adapter (the reference is the same base with it "
            "disabled); pick lora=r16 (or r8, r64)"
        )
    backbone = load_causal_lm(job.model_path, job.model, job.hardware, job.tokenizer)
    if adapter is None:
        return Policy(backbone, lora_config(job.lora, "CAUSAL_LM"), "base, adapter disabled")
    saved = LoraConfig.from_pretrained(str(adapter))
    log.info("continuing the init adapter %s (r=%s); the lora=%s group is not used", adapter, saved.r, job.lora.name)
    return Policy(load_adapter(backbone, adapter, trainable=True), None, "init adapter, frozen 'ref' copy", adapter)


class PolicyView:
    """The trainer's PeftModel seen as rlhf/modeling/generation.py's model side (``tokenizer``, ``device``,
    ``generate``, ``response_head`` for the roles "policy" and "reference") plus the reward model's ``scores``:
    what PPO's held-out evaluation reads off PPO's Roles. The policy is the adapter "default"; the reference the
    base with adapters disabled, or TRL's frozen "ref" copy of the init adapter."""

    value_on_policy = False

    def __init__(self, model, tokenizer, reward: RewardModel, bf16: bool):
        self.model, self.tokenizer, self.reward = model, tokenizer, reward
        self.autocast_dtype = torch.bfloat16 if bf16 else None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @contextmanager
    def evaluating(self):
        """The model in eval mode (dropout off, as PPO's roles always are) for the block, then as it was."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield self
        finally:
            self.model.train(was_training)

    def precision(self, generation: bool = False):
        """As PPO's Roles.precision: autocast for forwards with hardware.bf16; CPU generation stays fp32."""
        if self.autocast_dtype is None or (generation and self.device.type == "cpu"):
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @contextmanager
    def role(self, name: str):
        """The model as the policy ("default" adapter) or as the reference for the duration of the block."""
        if name == "policy":
            yield self.model
        elif "ref" in self.model.peft_config:
            self.model.set_adapter("ref")
            try:
                yield self.model
            finally:
                self.model.set_adapter("default")  # also makes "default" trainable again, "ref" frozen
        else:
            with self.model.disable_adapter():
                yield self.model

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, config, with_logits: bool = False, with_values: bool = False):
        if with_logits or with_values:
            raise NotImplementedError("the held-out evaluation needs the sampled tokens only")
        with self.role("policy") as model, self.precision(generation=True):
            return decode(model, input_ids, attention_mask, config)  # as PPO's and evaluate's decoding

    @torch.no_grad()
    def response_head(self, role: str, input_ids, attention_mask, prompt_len: int) -> torch.Tensor:
        """[B, P+T] ids/mask ([left-padded prompt | response]) -> LM logits [B, T, V] on the response tokens."""
        with self.role(role), self.precision():
            return response_logits(self.model.get_base_model(), input_ids, attention_mask, prompt_len)

    def scores(self, conversations: list[list[dict]], batch_size: int, max_length: int) -> torch.Tensor:
        return self.reward(conversations, batch_size, max_length)


# --------------------------------------------------------------------------- the trainer


def prompt_dataset(tokenizer, examples: list[dict], max_prompt_length: int) -> Dataset:
    """TRL's conversational prompt column: each conversation up to its last user turn, cut to
    ``max_prompt_length`` tokens by whole turns as PPO's rollouts cut it (rlhf/modeling/generation.py
    cut_prompts; TRL 1.16 has no prompt length limit). The policy answers this cut and the reward model reads it."""
    prompts = cut_prompts(
        tokenizer, [ex["prompt"] for ex in examples], max_prompt_length, "algo.sampling.max_prompt_length"
    )
    return Dataset.from_list([{"prompt": prompt} for prompt in prompts])


@costs.phase("prepare_data")  # the trainer tokenises the prompts
def make_trainer(
    job: Job,
    settings: Settings,
    policy: Policy,
    reward_function: RewardFunction,
    trainer_class,
    config_class,
    algo_args: dict,
    examples: list[dict] | None = None,
):
    """A TRL ``trainer_class`` (GRPOTrainer / RLOOTrainer) on the job's train prompts (or ``examples``) with
    ``config_class(**training_args(...), **algo_args)``; TRL's metrics go to our Tracker."""
    args = config_class(**training_args(settings, job), **algo_args)
    trainer = trainer_class(
        model=policy.model,
        reward_funcs=[reward_function],
        args=args,
        train_dataset=prompt_dataset(
            job.tokenizer, job.data.train if examples is None else examples, settings.sampling.max_prompt_length
        ),
        processing_class=job.tokenizer,
        peft_config=policy.peft_config,
        callbacks=[TrackerCallback(job.tracker)],
    )
    record_init_adapter(trainer, policy.init_adapter)  # each checkpoint names it: a resume checks it
    if policy.init_adapter is not None:
        freeze_reference_copy(trainer.model)
    return trainer


def freeze_reference_copy(model) -> None:
    """The init policy as the reference, whatever algo.beta is: TRL adds its frozen "ref" copy of the init adapter
    only when it needs reference log-probs (beta > 0); with beta = 0 it adds none, and the held-out KL (and
    summary.reference) would silently be against the base. Adds the same copy then (only the evaluation reads it)."""
    if "ref" in model.peft_config:
        return
    model.add_adapter("ref", model.peft_config["default"])
    disable_dropout_in_model(model)  # the copy's own LoRA dropout too, as TRL's trainer does for every module
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".ref." in name:
                param.copy_(model.get_parameter(name.replace(".ref.", ".default.")))
                param.requires_grad_(False)


@costs.phase("final_save")
def save_policy(model, tokenizer, adapter_dir: Path) -> None:
    """adapter/: the trained adapter only (not TRL's frozen 'ref' copy), and the tokenizer."""
    model.save_pretrained(adapter_dir, safe_serialization=True, selected_adapters=["default"])
    tokenizer.save_pretrained(adapter_dir)


def _append_samples(path: Path, when: str, step: int, records: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps({"when": when, "step": step, **record}) + "\n")


def train(job: Job, settings: Settings, trainer_class, config_class, algo_args: dict) -> dict:
    """Train the policy against the reward model with ``trainer_class``; save adapter/ and return the summary:
    the same start/final keys as PPO's (rm_score, gold_score, kl, length, eos_rate)."""
    rm = reward_model_run(job, settings.reward_model)  # cheap checks first: each fails with one line
    pin_scorers(job, {"algo.reward_model": rm})  # a resume scores with the one the run started with
    adapter = start_adapter(job, settings.init_adapter, resume_point(job.run_dir)[0] if job.resume else None)
    reward = RewardModel.load(job, rm)
    with_gold = job.dataset.name == "hh_synthetic"
    reward_function = RewardFunction(
        reward,
        job.tokenizer.eos_token_id,
        settings.missing_eos_penalty,
        with_gold,
        job.tracker,
        settings.sample_every,
        settings.sample_rows,
        settings.steps_per_rollout,
        separator=response_separator(job.tokenizer),
    )
    policy = build_policy(job, adapter)
    trainer = make_trainer(job, settings, policy, reward_function, trainer_class, config_class, algo_args)
    model = trainer.accelerator.unwrap_model(trainer.model)
    view = PolicyView(model, job.tokenizer, reward, job.hardware.bf16)
    eval_prompts = [ex["prompt"] for ex in job.data.test[: settings.eval_prompts]]
    samples_path = job.run_dir / EVAL_SAMPLES
    readings: dict[str, list[dict]] = {}  # when -> the held-out records

    @costs.phase("evaluation")
    def held_out(when: str, step: int) -> dict[str, float]:
        with view.evaluating():
            metrics, records = evaluate(
                view,
                eval_prompts,
                settings.sampling,
                settings.eval_greedy,
                settings.batch_size,
                reward.max_length,
                job.seed,
                with_gold,
                score_batch=job.hardware.micro_batch_size,
                policy_is_reference=when == "start",  # the fresh adapter (or init copy) equals the reference
            )
        readings[when] = records  # the start-to-final change is paired per prompt
        if job.writes:  # the main process of a launch writes the run directory
            _append_samples(samples_path, when, step, records)
        log.info("%s evaluation on %d held-out prompts: %s", when, len(eval_prompts), metrics)
        return metrics

    start_path = job.run_dir / START_EVAL
    if job.resume and start_path.is_file():
        start_eval = json.loads(start_path.read_text(encoding="utf-8"))
    else:  # before training the model is the start policy (a resume: the checkpoint loads inside train())
        if job.writes:
            truncate_jsonl(samples_path, lambda row: False)
        start_eval = held_out("start", 0)
        if job.writes:
            write_json_atomic(start_path, start_eval)
        if not job.resume:
            job.tracker.log({f"eval/{k}": v for k, v in start_eval.items()}, step=0)

    steps = run_trainer(trainer, job)
    if job.writes:  # a resumed run redoes the final evaluation
        truncate_jsonl(samples_path, lambda row: row["when"] == "start")
    if "start" not in readings and job.writes:  # resumed: the start records are in the file
        readings["start"] = read_start_records(samples_path)
    final_eval = held_out("final", steps)
    job.tracker.log({f"eval/{k}": v for k, v in final_eval.items()}, step=steps)
    if job.writes:
        save_policy(model, job.tokenizer, job.adapter_dir)

    summary = {f"{k}_start": v for k, v in start_eval.items()} | {f"{k}_final": v for k, v in final_eval.items()}
    summary.update(change_summary(readings.get("start", []), readings["final"], job.seed))
    summary.update(
        train_steps=steps,
        rollouts=steps // settings.steps_per_rollout,
        episodes=steps // settings.steps_per_rollout * settings.batch_size,
        num_generations=settings.num_generations,
        kl_bound=settings.kl_bound,
        kl_within_bound=final_eval["kl"] <= settings.kl_bound,
        reward_model=str(rm.run_dir),
        reference=policy.reference,
        init_adapter=str(policy.init_adapter) if policy.init_adapter else None,
        eval_prompts=len(eval_prompts),
    )
    if not summary["kl_within_bound"]:
        log.warning(
            "final KL %.3f is above algo.kl_bound=%.3f: raise algo.beta or lower the learning rate",
            final_eval["kl"],
            settings.kl_bound,
        )
    return summary
