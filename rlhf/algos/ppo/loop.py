"""The PPO training loop (ours: TRL no longer ships one), with LoRA roles on one shared base.

Each iteration, for a batch of training prompts:

    1. rollout     the policy samples a response to each prompt (left-padded prompts, stop at EOS), in
                   ``rollout_chunk_size`` prompts per generate call; at full precision the sampling log-probs
                   are kept: they are the old policy's (and, with ``value_model=policy``, the values of the
                   states they were sampled from)
    2. score       reference log-probs (and old-policy ones under autocast), values (unless kept), and the
                   reward model's score of each response at its last real token, ``rollout_chunk_size``
                   sequences per forward; ``missing_eos_penalty`` for responses cut at the length limit;
                   optional clipping / whitening of the scores
    3. rewards     per token: -beta * KL(policy || reference) on every token, + the score on the last;
                   beta fixed or adaptive (KL controller)
    4. advantages  GAE (gamma, lambda), optional reward whitening, advantage whitening
    5. update      ``ppo_epochs`` passes over shuffled minibatches (gradient accumulation in micro
                   batches of hardware.micro_batch_size): clipped policy loss + vf_coef * clipped value
                   loss, gradient clipping; the optimizer is hardware.optim's (rlhf/algos/ppo/optimizer.py)
    6. log         metrics.jsonl / W&B; a table of sample completions every ``sample_every`` iterations

Step 1 is rlhf/modeling/generation.py (shared with evaluation), step 2 rlhf/algos/ppo/scoring.py, the roles
(policy, reference, reward, value) rlhf/algos/ppo/roles.py, the tensor math rlhf/algos/ppo/math.py, the settings
rlhf/algos/ppo/settings.py. Held-out prompts are evaluated before and after training (rm score, gold score,
KL); with ``algo.sentinel_prompts`` every checkpoint is also scored by an independent judge, and ``algo.keep_best``
makes the final adapter the checkpoint it scored best (rlhf/algos/ppo/sentinel.py). Defaults and the reasons for
them are in conf/algo/ppo.yaml.

Resuming a killed run (SIGKILL, out of memory, preemption): ``python train.py resume=RUN_DIR``.
It restores the newest checkpoint in RUN_DIR/checkpoints/ (written every ``save_every``
iterations: adapters, value head, optimizer, scheduler, KL controller, RNG states, step), drops the
metrics.jsonl rows logged after it, and continues as if never stopped. SIGTERM / SIGINT save a
checkpoint after the current iteration and stop (rlhf/run/stopping.py).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from transformers import get_scheduler

from rlhf.algos.ppo import checkpoint
from rlhf.algos.ppo.math import (
    apply_missing_eos_penalty,
    compute_gae,
    make_kl_controller,
    masked_mean,
    masked_whiten,
    normalize_scores,
    per_token_rewards,
    policy_loss,
    value_loss,
)
from rlhf.algos.ppo.optimizer import build_optimizer, optimizer_class
from rlhf.algos.ppo.roles import Roles, build_roles
from rlhf.algos.ppo.scoring import response_logprobs_and_values, response_values, score_rollout
from rlhf.algos.ppo.sentinel import STATE_KEY, Sentinel, judge_run
from rlhf.algos.ppo.settings import Settings
from rlhf.data.gold_judge import gold_score_batch
from rlhf.errors import ConfigError
from rlhf.modeling.generation import Rollout, cut_prompts, micro_batches, response_logprobs, sample
from rlhf.modeling.held_out import change_summary, chunk_seed, evaluate, read_start_records, summarize
from rlhf.run import costs, distributed, stopping
from rlhf.run.job import Job
from rlhf.run.nonfinite import NonFiniteCounter, is_finite, numeric_error
from rlhf.run.rundir import REWARD_ALGOS, FinishedRun, finished_run, resolve_adapter, truncate_jsonl
from rlhf.run.safe_load import refuse_unsafe_pickles
from rlhf.run.scorers import pin_scorers

__all__ = ["Settings", "train", "build", "fit", "ppo_iteration", "prompt_indices"]

log = logging.getLogger(__name__)

EVAL_SAMPLES = "eval_samples.jsonl"


def prompt_indices(n_prompts: int, batch_size: int, iteration: int, seed: int) -> list[int]:
    """Prompts of 1-based ``iteration``: consecutive slices of the prompt set, reshuffled every pass.

    A pure function of its arguments, so a resumed run draws exactly the prompts it would have.
    """
    start, out = (iteration - 1) * batch_size, []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n_prompts)
        order = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        out += order[offset : offset + batch_size - len(out)]
    return out


def validation_split(train_prompts: list, n: int) -> tuple[list, list]:
    """(the rollouts' prompts, the sentinel's n): the last n training prompts, which the rollouts then never draw.

    Not the held-out test prompts: those judge the final policy (here and in evaluate.py), and algo.keep_best
    chooses a checkpoint by the sentinel's score, so choosing on them would flatter the choice."""
    check_validation_size(n, len(train_prompts))
    return (train_prompts[:-n], train_prompts[-n:]) if n else (train_prompts, [])


def check_validation_size(n: int, n_train: int) -> None:
    """validation_split's one-line error, checkable before any prompt is cut."""
    if n and n >= n_train:
        raise ConfigError(
            f"algo.sentinel_prompts={n} is out of range: the sentinel takes its prompts from the {n_train} "
            "training prompts and must leave some for the rollouts; set it lower (e.g. 16)"
        )


# --------------------------------------------------------------------------- setup checks


def reward_model(job: Job, settings: Settings) -> FinishedRun:
    """The finished rm run to score with: algo.reward_model, or outputs/latest/rm; with a shared base, on this base."""
    path = Path(settings.reward_model) if settings.reward_model else job.outputs_root / "latest" / "rm"
    if not path.exists():
        raise ConfigError(
            f"no reward model at {path}: run `python train.py algo=rm` first, "
            "or set algo.reward_model=<rm run directory>"
        )
    run = finished_run(
        path,
        "algo.reward_model",
        REWARD_ALGOS,
        job.model if settings.share_base else None,
        base_fix="one shared base cannot serve both: set algo.share_base=false "
        f"(or train a reward model with model={job.model.name})",
    )
    if settings.share_base and run.summary.get("init_adapter"):
        raise ConfigError(
            f"algo.reward_model={settings.reward_model or path}: that reward model started from the adapter "
            f"{run.summary['init_adapter']['path']} merged into its base, which one shared base cannot hold beside "
            "the policy; set algo.share_base=false (or use a reward model trained from the base)"
        )
    return run


def init_adapter(job: Job, settings: Settings) -> Path | None:
    """The adapter the policy starts from (algo.init_adapter: an adapter directory or a policy run), or None."""
    if settings.init_adapter is None:
        return None
    return resolve_adapter(settings.init_adapter, "algo.init_adapter", job.model)


def resume_checkpoint(job: Job) -> Path | None:
    """The newest checkpoint to continue from when the job resumes (train.py resume=...), else None."""
    if not job.resume:
        return None
    found = checkpoint.latest(job.run_dir)
    if found is None:
        raise ConfigError(
            f"resume={job.run_dir}: no complete checkpoint in {job.run_dir / checkpoint.CHECKPOINTS}; "
            "start the run afresh"
        )
    return found


# --------------------------------------------------------------------------- one iteration


def ppo_iteration(
    roles: Roles,
    optimizer,
    scheduler,
    kl_controller,
    prompts: list[list[dict]],
    settings: Settings,
    micro_batch: int,
    reward_max_length: int,
    with_gold: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, float], Rollout, torch.Tensor]:
    """Steps 1-5 on one batch of prompts; returns (step-6 metrics, the rollout, its raw scores [B]).
    ``with_gold``: also log the gold judge's mean score of the rollout (synthetic data only), which
    shows reward hacking as a gap between objective/scores and objective/gold_score. ``generator`` draws
    the minibatches (see ppo_update).

    Several processes (rlhf/run/distributed.py): ``prompts`` is this process's contiguous share of the
    iteration's batch; score whitening, advantage whitening, the KL controller's input, the finiteness
    verdict and the metrics are the whole batch's (summed over processes), and the update is one update of
    the whole batch (ppo_update).

    A NaN/inf score, log-prob or value skips the whole update (step 5): metrics
    ``nonfinite/iteration_skipped`` = 1 and ``nonfinite/skipped_updates`` = every minibatch update;
    ``objective/scores`` is then the mean of the finite scores."""
    times = {}
    clock = time.perf_counter()

    # 1. rollout: sample a response to every prompt; at full precision keep the sampling log-probs, which
    #    are the old policy's (step 2 then needs no policy forward).
    with costs.phase("generation"):
        rollout = sample(
            roles,
            prompts,
            settings.sampling,
            chunk_size=settings.rollout_chunk_size,
            with_logprobs=roles.generation_matches_scoring,
        )
    sequence_tokens = _tokens(rollout)
    costs.add_tokens(forwarded=sequence_tokens)
    costs.add_episodes(len(rollout))
    times["rollout"], clock = time.perf_counter() - clock, time.perf_counter()

    # 2. score: log-probs under the reference (and the sampling policy, unless kept), values, reward-model scores.
    with costs.phase("scoring"):
        old = score_rollout(
            roles, rollout, settings.sampling.temperature, settings.rollout_chunk_size, reward_max_length
        )
    # reference and reward forwards, and the old policy's and the values' where the rollout did not keep them
    costs.add_tokens(forwarded=sequence_tokens * (2 + (rollout.logprobs is None) + (rollout.values is None)))
    scores = apply_missing_eos_penalty(old.scores, rollout.has_eos, settings.missing_eos_penalty)
    total = distributed.sum_over_ranks if distributed.world_size() > 1 else None  # statistics of the whole batch
    scores = normalize_scores(scores, settings.reward_clip, settings.whiten_scores, total)
    times["score"], clock = time.perf_counter() - clock, time.perf_counter()

    with costs.phase("advantages"):
        # 3. per-token rewards: -beta * KL on every token, + the score on the last real token.
        beta = kl_controller.value
        rewards, kl = per_token_rewards(
            scores, old.logprobs, old.ref_logprobs, rollout.mask, beta, settings.kl_estimator
        )
        kl_per_response = _batch_mean(kl.sum(1))
        rlhf_reward = _batch_mean(rewards.sum(1))

        # 4. advantages: GAE over the response tokens; whitening.
        if settings.whiten_rewards:
            rewards = masked_whiten(rewards, rollout.mask, shift_mean=False, total=total)
        advantages, returns = compute_gae(rewards, old.values, rollout.mask, settings.gamma, settings.lam)
        if settings.whiten_advantages:
            advantages = masked_whiten(advantages, rollout.mask, total=total)
    times["advantages"], clock = time.perf_counter() - clock, time.perf_counter()

    # 5. update: PPO epochs over shuffled minibatches. A NaN/inf raw score (reward_clip would hide an
    #    inf), log-prob or value poisons every minibatch and the KL controller: skip them all, count it.
    with costs.phase("update"):
        if distributed.all_ranks(is_finite(old.scores, rewards, advantages, returns)):
            kl_controller.update(kl_per_response, len(rollout) * distributed.world_size())
            stats = ppo_update(
                roles, optimizer, scheduler, rollout, old, advantages, returns, settings, micro_batch, generator
            )
        else:
            updates = settings.ppo_epochs * settings.num_mini_batches
            log.warning(
                "NaN/inf in the scores, log-probs or values of this rollout: its %d updates are skipped", updates
            )
            _skip_updates(optimizer, scheduler, updates)
            stats = {"nonfinite/skipped_updates": float(updates), "nonfinite/iteration_skipped": 1.0}
    times["update"] = time.perf_counter() - clock

    # 6. log
    mask = rollout.mask.float()
    tokens = mask.sum().item()
    metrics = {
        "objective/kl": kl_per_response,
        "objective/entropy": (old.entropy * mask).sum(1).mean().item(),
        "objective/non_score_reward": -beta * kl_per_response,
        "objective/rlhf_reward": rlhf_reward,
        "objective/scores": _finite_mean(old.scores),
        "objective/beta": beta,
        **stats,
        "response/length": mask.sum(1).mean().item(),
        "response/eos_rate": rollout.has_eos.float().mean().item(),
        "perf/tokens_per_s": tokens / sum(times.values()),
        "perf/gen_tokens_per_s": tokens / times["rollout"],
        "lr": scheduler.get_last_lr()[0],
        **{f"time/{phase}": seconds for phase, seconds in times.items()},
        "time/iteration": sum(times.values()),
    }
    if with_gold:
        metrics["objective/gold_score"] = sum(gold_score_batch(rollout.prompts, rollout.texts)) / len(rollout)
    return _whole_batch(metrics), rollout, old.scores


def _tokens(rollout: Rollout, rows: torch.Tensor | None = None) -> int:
    """Non-padding tokens of the rollout's [prompt | response] sequences (the selected ``rows``): one forward's."""
    rows = slice(None) if rows is None else rows
    return int(rollout.prompt_mask[rows].sum() + rollout.mask[rows].sum())


def _batch_mean(values: torch.Tensor) -> float:
    """Mean of per-response ``values`` [b] over the whole batch (every process's share)."""
    if distributed.world_size() == 1:
        return values.mean().item()
    count = torch.tensor(len(values), dtype=torch.float64, device=values.device)
    total = distributed.sum_over_ranks(torch.stack([values.sum().double(), count]))
    return (total[0] / total[1]).item()


_LARGEST = ("policy/ratio_max",)  # metrics that take the largest process's value, not the mean
# What _policy_and_value_backward reports per micro batch, averaged by ppo_update.
UPDATE_STATS = (
    "loss/policy",
    "loss/value",
    "policy/approxkl",
    "policy/clipfrac",
    "policy/ratio_mean",
    "value/clipfrac",
    "value/vpred",
)


def _whole_batch(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics averaged over processes (equal shares, so means of means are the batch's means); a process
    without a value (NaN: no rows in any minibatch) is left out of that metric's mean."""
    if distributed.world_size() == 1:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    known = torch.isfinite(values)
    sums = distributed.sum_over_ranks(torch.stack([torch.where(known, values, 0.0), known.double()]))
    mean = sums[0] / sums[1]  # NaN where no process had a value
    largest = distributed.max_over_ranks(torch.where(known, values, -torch.inf))
    return {k: (largest if k in _LARGEST else mean)[i].item() for i, k in enumerate(keys)}


def ppo_update(
    roles: Roles,
    optimizer,
    scheduler,
    rollout: Rollout,
    old,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    settings: Settings,
    micro_batch: int,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Step 5: ``ppo_epochs`` x ``num_mini_batches`` optimizer steps, each accumulated over micro batches.

    Each epoch shuffles the whole batch's rows with ``generator`` (None: torch's global RNG) and cuts them
    into minibatches. With several processes ``rollout`` is this process's contiguous share: each takes the
    rows of a minibatch that it holds, weighs every micro batch by its share of the whole minibatch's response
    tokens, and the gradients are summed over processes before the step, so the update is the one-process,
    one-micro-batch update of the same batch and minibatches (up to float summation order) whatever the
    lengths, the micro batch size and the number of processes; every process then takes the same step.

    rollout [B rows], advantages / returns [B, T]. With a value adapter the policy and value losses use
    different adapters, so each gets its own forward and backward (they share no trainable weights: the
    sum's gradient is the same, the peak memory is lower); with the value head on the policy one forward
    and one backward of pg_loss + vf_coef * vf_loss serve both. A minibatch whose loss or gradient norm is
    NaN/inf is skipped (no optimizer step, its stats left out) and counted in ``nonfinite/skipped_updates``;
    ``nonfinite/iteration_skipped`` is 1 when every minibatch was.
    """
    params = list(roles.trainable.values())
    local = len(rollout)
    whole, offset = local * distributed.world_size(), local * distributed.rank()
    size = whole // settings.num_mini_batches
    sums, ratio_max, grad_norms = defaultdict(float), 0.0, []
    n = skipped = 0
    for _ in range(settings.ppo_epochs):
        order = torch.randperm(whole, generator=generator)
        for minibatch in order.split(size):
            optimizer.zero_grad(set_to_none=True)
            mine = minibatch[(minibatch >= offset) & (minibatch < offset + local)] - offset  # this process's rows
            # The loss is the minibatch's token mean: every micro batch's token sum over the response tokens of
            # the whole minibatch, on every process (not a mean of micro batch means, which weighs a token by
            # how it was split whenever lengths differ).
            tokens = distributed.sum_over_ranks(rollout.mask[mine].sum().double()).item()
            parts = []  # (stats, ratio max) of each micro batch
            for rows in micro_batches(rollout, mine, micro_batch) if len(mine) else []:  # similar lengths: less padding
                with roles.grad_passes():
                    parts.append(
                        _policy_and_value_backward(roles, rollout, old, advantages, returns, settings, rows, tokens)
                    )
            distributed.sum_gradients(params)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm).item()
            # A NaN/inf would reach the weights and AdamW's moments for good: drop this update instead.
            losses = (stats[k] for stats, _ in parts for k in ("loss/policy", "loss/value"))
            if not distributed.all_ranks(is_finite(grad_norm, *losses)):
                skipped += 1
                _skip_updates(optimizer, scheduler, 1)
                continue
            for step_stats, step_ratio_max in parts:
                for key, value in step_stats.items():
                    sums[key] += value
                ratio_max = max(ratio_max, step_ratio_max)
                n += 1
            grad_norms.append(grad_norm)
            optimizer.step()
            scheduler.step()
    if skipped:
        log.warning(
            "%d of %d minibatch updates skipped: NaN/inf loss or gradient norm", skipped, skipped + len(grad_norms)
        )
    nan = float("nan")
    return {
        # this process's micro batches (ppo_iteration averages the processes); the same keys in every one
        **{k: sums[k] / n if n else nan for k in UPDATE_STATS},
        "policy/ratio_max": ratio_max if n else nan,
        "perf/grad_norm": sum(grad_norms) / len(grad_norms) if grad_norms else nan,
        "nonfinite/skipped_updates": float(skipped),
        "nonfinite/iteration_skipped": float(not grad_norms),
    }


def _skip_updates(optimizer, scheduler, count: int) -> None:
    """Skip ``count`` optimizer updates: drop the gradients (weights and AdamW state stay as they are) but
    step the scheduler, so the learning-rate schedule keeps its length (and a resumed run its place)."""
    optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():  # torch warns if the very first update is the skipped one; intended
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        for _ in range(count):
            scheduler.step()


def _finite_mean(values: torch.Tensor) -> float:
    """Mean of the finite entries of ``values`` [B] (NaN when there are none)."""
    return values[torch.isfinite(values)].float().mean().item()


def _policy_and_value_backward(
    roles: Roles,
    rollout: Rollout,
    old,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    settings: Settings,
    rows: torch.Tensor,
    minibatch_tokens: float,
) -> tuple[dict[str, float], float]:
    """Accumulate the gradients of one micro batch, its token-mean losses weighted by its share of the whole
    minibatch's ``minibatch_tokens`` response tokens (so the sum over micro batches and processes is the
    minibatch's token mean); returns its stats."""
    mask = rollout.mask[rows]
    weight = mask.sum().item() / minibatch_tokens
    tokens = _tokens(rollout, rows) * (1 if roles.value_on_policy else 2)  # one pass for both heads, or one each
    costs.add_tokens(forwarded=tokens, backpropagated=tokens)
    # Backward inside the role's block: with gradient checkpointing, layers recompute their forward
    # during backward, with whichever adapter is active then.
    if roles.value_on_policy:  # one trunk pass feeds both heads
        with roles.active("policy"):
            new_logprobs, values = response_logprobs_and_values(roles, rollout, rows, settings.sampling.temperature)
            pg_loss, pg = policy_loss(new_logprobs, old.logprobs[rows], advantages[rows], mask, settings.cliprange)
            vf_loss, vf = value_loss(values, old.values[rows], returns[rows], mask, settings.cliprange_value)
            (weight * (pg_loss + settings.vf_coef * vf_loss)).backward()
    else:
        with roles.active("policy"):
            new_logprobs, _ = response_logprobs(roles, "policy", rollout, rows, settings.sampling.temperature)
            pg_loss, pg = policy_loss(new_logprobs, old.logprobs[rows], advantages[rows], mask, settings.cliprange)
            (weight * pg_loss).backward()
        with roles.active("value"):
            values = response_values(roles, rollout, rows)
            vf_loss, vf = value_loss(values, old.values[rows], returns[rows], mask, settings.cliprange_value)
            (weight * settings.vf_coef * vf_loss).backward()
    stats = {
        "loss/policy": pg_loss,
        "loss/value": vf_loss,
        "policy/approxkl": pg["approxkl"],
        "policy/clipfrac": pg["clipfrac"],
        "policy/ratio_mean": pg["ratio_mean"],
        "value/clipfrac": vf["clipfrac"],
        "value/vpred": masked_mean(values.detach(), mask),
    }
    return {k: v.item() for k, v in stats.items()}, pg["ratio_max"].item()


# --------------------------------------------------------------------------- the run


def _append_samples(path: Path, when: str, step: int, records: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps({"when": when, "step": step, **record}) + "\n")


def _sample_table(rollout: Rollout, scores: torch.Tensor, rows: int, step: int) -> list[list]:
    return [
        [step, prompt[-1]["content"], text, score]
        for prompt, text, score in list(zip(rollout.prompts, rollout.texts, scores.tolist()))[:rows]
    ]


def build(job: Job, settings: Settings) -> tuple[Roles, FinishedRun]:
    """(roles, the rm run), after the cheap checks that can fail with a one-line ConfigError."""
    rm = reward_model(job, settings)
    start = init_adapter(job, settings)
    resume_checkpoint(job)
    scorers = {"algo.reward_model": rm}
    if settings.sentinel_prompts:
        check_validation_size(settings.sentinel_prompts, len(job.data.train))
        scorers["algo.sentinel_judge"] = judge_run(job, settings, rm)
    pin_scorers(job, scorers)  # a resume scores with the ones the run started with (rlhf/run/scorers.py)
    micro_batch_size(job, settings)
    optimizer_class(job.hardware.optim, settings.learning_rate, settings.adam_eps, _device(job))
    return build_roles(job, rm, settings.share_base, start, settings.value_model), rm


def _device(job: Job) -> torch.device:
    """Where the roles will train (build_roles puts them on the GPU when hardware.cuda)."""
    return torch.device("cuda" if job.hardware.cuda else "cpu")


def micro_batch_size(job: Job, settings: Settings) -> int:
    """Rows per forward in the update; the minibatch (algo.batch_size / algo.num_mini_batches) is global: the
    launch's processes share it (rlhf/run/distributed.py)."""
    size, _ = job.hardware.accumulation_steps(
        settings.batch_size // settings.num_mini_batches,
        "the minibatch (algo.batch_size / algo.num_mini_batches)",
        distributed.world_size(),
    )
    return size


def train(job: Job, settings: Settings) -> dict:
    """Train the policy against the reward model; save adapter/ and return the summary metrics."""
    with costs.phase("load_model"):
        roles, rm = build(job, settings)
    return fit(job, settings, roles, rm)


def fit(job: Job, settings: Settings, roles: Roles, rm: FinishedRun) -> dict:
    """The training loop on built roles (start evaluation or resume, iterations, final evaluation, save).

    Several processes: each rolls out and scores its contiguous share of every iteration's prompts (together
    the prompts one process would use), the update is the whole batch's (ppo_iteration); every process holds
    all roles on the one shared base. Rank 0 alone writes (metrics, samples, checkpoints, adapter); a stop
    signal that reached any process stops them all at the same iteration."""
    resume_from = resume_checkpoint(job)
    stop = stopping.current()
    micro = micro_batch_size(job, settings)
    optimizer = build_optimizer(
        roles.trainable.values(), job.hardware.optim, settings.learning_rate, settings.adam_eps, roles.device
    )
    updates = settings.iterations * settings.ppo_epochs * settings.num_mini_batches
    scheduler = get_scheduler(settings.lr_scheduler_type, optimizer, round(settings.warmup_ratio * updates), updates)
    kl_controller = make_kl_controller(settings.kl_coef, settings.adaptive_kl, settings.kl_target, settings.kl_horizon)
    reward_max_length = int(rm.config.algo.max_length)  # what the reward model was trained on
    # Cut by whole turns once (sample() would cut each batch the same way): a prompt no cut can fit fails here,
    # naming algo's key.
    key, length = "algo.sampling.max_prompt_length", settings.sampling.max_prompt_length
    with costs.phase("prepare_data"):
        train_prompts = cut_prompts(job.tokenizer, [ex["prompt"] for ex in job.data.train], length, key)
        train_prompts, sentinel_prompts = validation_split(train_prompts, settings.sentinel_prompts)
        eval_prompts = cut_prompts(
            job.tokenizer, [ex["prompt"] for ex in job.data.test[: settings.eval_prompts]], length, key
        )
    with_gold = job.dataset.name == "hh_synthetic"
    samples_path = job.run_dir / EVAL_SAMPLES
    sentinel = (
        Sentinel.start(job, settings, roles, rm, sentinel_prompts, reward_max_length)
        if settings.sentinel_prompts
        else None
    )

    readings: dict[str, list[dict]] = {}  # when -> the held-out records

    @costs.phase("evaluation")
    def held_out(when: str, step: int) -> dict[str, float]:
        """The held-out evaluation, the processes sharing its chunks of prompts (gathered, in order; each chunk
        seeded by its index, so the records do not depend on the number of processes)."""

        def answer(index: int, prompts: list[list[dict]]) -> list[dict]:
            return evaluate(
                roles,
                prompts,
                settings.sampling,
                settings.eval_greedy,
                settings.rollout_chunk_size,
                reward_max_length,
                chunk_seed(job.seed, index),
                with_gold,
                policy_is_reference=when == "start",  # the policy starts as its reference: KL 0, no two forwards
            )[1]

        records = distributed.map_chunks(eval_prompts, settings.rollout_chunk_size, answer)
        readings[when] = records  # the start-to-final change is paired per prompt
        metrics = summarize(records)
        if job.writes:
            _append_samples(samples_path, when, step, records)
        log.info("%s evaluation on %d held-out prompts: %s", when, len(eval_prompts), metrics)
        return metrics

    if distributed.world_size() > 1:  # the roles are built alike everywhere; now each process samples its own
        torch.manual_seed(distributed.rank_seed(job.seed))  # stream (one seed would draw alike for every share)
    if resume_from is not None:
        refuse_unsafe_pickles(resume_from)  # one line, not torch's traceback (rlhf/run/safe_load.py)
        with costs.phase("checkpoint"):
            state = checkpoint.restore(resume_from, roles, optimizer, scheduler, kl_controller, job.seed)
        costs.carry(resume_from)  # later checkpoints' costs count from the run's first step
        start_step, start_eval = state["step"], state["start_eval"]
        if sentinel is not None:
            sentinel.restore(state, start_step)
        job.resumed_from(start_step)  # the run directory follows the checkpoint from here on
        if job.writes:
            truncate_jsonl(samples_path, lambda row: row["when"] == "start")  # the final evaluation is redone
            readings["start"] = read_start_records(samples_path)
        log.info("resumed from %s (step %d)", resume_from, start_step)
    else:
        start_step = 0
        start_eval = held_out("start", 0)
        job.tracker.log({f"eval/{k}": v for k, v in start_eval.items()}, step=0)

    @costs.phase("checkpoint")
    def save_checkpoint(step: int) -> Path | None:
        """Rank 0 writes it (every process holds the same weights, optimizer and controller); all wait."""
        extra = {"start_eval": start_eval}
        if sentinel is not None:  # this checkpoint's independent score, with the history before it
            extra[STATE_KEY] = sentinel.read(step)
        rng_states = checkpoint.launch_rng_states()  # each process's stream: a resume draws what it would have
        cost = costs.snapshot()  # the run's cost so far (a collective), for evaluate.py's cost curves
        saved = None
        if job.writes:
            saved = checkpoint.save(
                job.run_dir, step, roles, optimizer, scheduler, kl_controller, extra, rng_states,
                keep=settings.keep_checkpoints, cost=cost,
            )  # fmt: skip
        distributed.barrier()
        return saved

    final_eval = None
    nonfinite = NonFiniteCounter(job.max_nonfinite_updates)  # iterations in a row whose update was skipped
    for step in range(start_step + 1, settings.iterations + 1):
        batch = [train_prompts[i] for i in prompt_indices(len(train_prompts), settings.batch_size, step, job.seed)]
        # The minibatch order: the same in every process and for every number of processes, and on resume.
        order = torch.Generator().manual_seed(job.seed * 1_000_003 + step)
        metrics, rollout, scores = ppo_iteration(
            roles, optimizer, scheduler, kl_controller, batch[distributed.shard(len(batch))], settings, micro,
            reward_max_length, with_gold, order,
        )  # fmt: skip
        nonfinite.record(not metrics["nonfinite/iteration_skipped"])
        metrics["nonfinite/skipped_iterations"] = nonfinite.skipped
        if nonfinite.exhausted:  # skipped updates changed no weights: this checkpoint is the last good state
            job.tracker.log(metrics, step=step)
            save_checkpoint(step)
            raise numeric_error(nonfinite.consecutive, step, job.run_dir / checkpoint.CHECKPOINTS, nonfinite.patience)
        if step == settings.iterations and not settings.keep_best:  # keep_best: after the loop, of the kept policy
            final_eval = held_out("final", step)
            metrics.update({f"eval/{k}": v for k, v in final_eval.items()})
        job.tracker.log(metrics, step=step)
        log.info(
            "step %d/%d: score %.3f kl %.3f length %.1f (%.1f s)",
            step,
            settings.iterations,
            metrics["objective/scores"],
            metrics["objective/kl"],
            metrics["response/length"],
            metrics["time/iteration"],
        )
        if step % settings.sample_every == 0 or step == settings.iterations:
            job.tracker.log_table(
                "samples",
                ["step", "prompt", "response", "score"],
                _sample_table(rollout, scores, settings.sample_rows, step),
                step,
            )
        stopping_now = stop.agreed()
        if step % settings.save_every == 0 or step == settings.iterations or stopping_now:
            saved = save_checkpoint(step)
            if stopping_now:
                raise stop.interrupted(job.run_dir, step, saved)
    costs.sum_counts_over_ranks()  # every process leaves the loop at the same iteration
    kept = sentinel.keep_best(settings.iterations) if settings.keep_best else settings.iterations
    if final_eval is None:  # keep_best, or resumed from the last checkpoint: only the evaluation was missing
        final_eval = held_out("final", settings.iterations)

    with costs.phase("final_save"):
        if job.writes:
            roles.save(job.adapter_dir)
    summary = {f"{k}_start": v for k, v in start_eval.items()} | {f"{k}_final": v for k, v in final_eval.items()}
    summary.update(change_summary(readings.get("start", []), readings["final"], job.seed))
    summary.update(
        iterations=settings.iterations,
        episodes=settings.iterations * settings.batch_size,
        kl_bound=settings.kl_bound,
        kl_within_bound=final_eval["kl"] <= settings.kl_bound,
        reward_model=str(rm.run_dir),
        share_base=settings.share_base,
        value_model=settings.value_model,
        eval_prompts=len(eval_prompts),
    )
    if sentinel is not None:
        summary.update(sentinel.finish(kept))
    if not summary["kl_within_bound"]:
        log.warning(
            "final KL %.3f is above algo.kl_bound=%.3f: raise algo.kl_coef or lower the learning rate",
            final_eval["kl"],
            settings.kl_bound,
        )
    return summary
