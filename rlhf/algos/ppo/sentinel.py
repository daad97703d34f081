"""The Goodhart sentinel: each saved PPO checkpoint scored on validation prompts by a judge the policy never optimised.

The reward model PPO maximises is a proxy; pushed far enough, its score keeps rising while the responses get
worse (Goodhart's law, reward over-optimisation: Gao et al. 2022). The sentinel watches an independent score
during training, so that is seen as it happens, and with ``algo.keep_best`` stopped: the final adapter is the
checkpoint the independent judge liked best, not the last one.

    judge      algo.sentinel_judge=auto: the gold judge on hh_synthetic (rlhf/data/gold_judge.py), elsewhere
               <outputs_root>/latest/judge (algo=judge: a reward model trained on the half of the pairs PPO's
               reward model never saw); or an rm / judge run directory. PPO's own reward model is refused.
               A judge run on the policy's base becomes one more frozen adapter + score head on the policy's
               model (Roles.attach_reward_adapter, as the reward role: no second copy of the base); one on
               another base is loaded as evaluate.py loads its judge (load_reward_run).
    reading    at every checkpoint: rlhf/modeling/held_out.py's evaluate on algo.sentinel_prompts validation
               prompts, the last N of the training split, which the rollouts then never draw (loop.validation_split;
               not the test prompts that judge the final policy, so keep_best does not choose on them), greedy
               or seeded sampling as algo.eval_greedy says; proxy_score = the reward
               model's mean score of those responses, independent_score = the judge's, kl = the mean KL per
               response to the reference
    history    one row per checkpoint: run_dir/sentinel.jsonl, the tracker's sentinel/* metrics, and the
               checkpoint's state.pt, so a resumed run continues it
    keep_best  the reading with the best independent score: its checkpoint's policy adapter goes back into the
               policy before the final held-out evaluation and save; at the end, run_dir/sentinel.png
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rlhf.algos.ppo import checkpoint
from rlhf.algos.ppo.roles import Roles
from rlhf.algos.ppo.sentinel_plot import plot_sentinel
from rlhf.algos.ppo.settings import Settings
from rlhf.data.gold_judge import has_gold_judge
from rlhf.data.halves import check_disjoint
from rlhf.errors import ConfigError
from rlhf.modeling.fingerprints import adapter_fingerprint
from rlhf.modeling.held_out import chunk_seed, evaluate
from rlhf.modeling.models import load_reward_run
from rlhf.modeling.reward_scoring import score_conversations
from rlhf.run import costs, distributed
from rlhf.run.job import Job
from rlhf.run.rundir import REWARD_ALGOS, FinishedRun, finished_run, write_text_atomic

__all__ = ["Sentinel", "best_reading", "judge_run", "SENTINEL_JSONL", "SENTINEL_PNG", "STATE_KEY"]

log = logging.getLogger(__name__)

SENTINEL_JSONL = "sentinel.jsonl"
SENTINEL_PNG = "sentinel.png"
STATE_KEY = "sentinel"  # the history in a checkpoint's state.pt
GOLD = "gold"  # the judge's name in the history when it is the gold judge
JUDGE_ROLE = "judge"  # the judge's adapter name on the policy's model


def best_reading(history: list[dict]) -> dict | None:
    """The reading with the highest finite independent score (the earliest of equals: the least drift from the
    reference), or None when there is none."""
    finite = [row for row in history if math.isfinite(row["independent_score"])]
    return max(finite, key=lambda row: (row["independent_score"], -row["step"]), default=None)


def _same_weights(a: Path, b: Path) -> bool:
    try:
        return adapter_fingerprint(a) == adapter_fingerprint(b)
    except FileNotFoundError:
        return False


def judge_run(job: Job, settings: Settings, rm: FinishedRun) -> FinishedRun | None:
    """The judge run ``algo.sentinel_judge`` names (None: the gold judge), checked: finished, an rm or judge run,
    and not ``rm``, the reward model PPO optimises (by path or by identical weights)."""
    key, value, dataset = "algo.sentinel_judge", settings.sentinel_judge, job.dataset.name
    auto = value == "auto"
    if auto and has_gold_judge(dataset):
        return None
    path = Path(job.outputs_root) / "latest" / "judge" if auto else Path(value)
    if auto and not path.exists():
        raise ConfigError(
            f"{key}=auto: dataset={dataset} has no gold judge and {path} does not exist; train the independent "
            f"judge (`python train.py algo=judge dataset={dataset}`) or set {key}=<rm or judge run directory>"
        )
    run = finished_run(path, key, REWARD_ALGOS)
    if run.run_dir == rm.run_dir or _same_weights(run.adapter, rm.adapter):
        raise ConfigError(
            f"{key}={value}: {run.run_dir} is PPO's own reward model (algo.reward_model); the sentinel's judge must "
            f"be independent: train one on the other half of the pairs (`python train.py algo=judge "
            f"dataset={dataset}`) or point {key} at another rm / judge run"
        )
    if not has_gold_judge(dataset):
        check_disjoint(key, run.run_dir, run.summary, "PPO's reward model (algo.reward_model)", rm.run_dir, rm.summary)
    return run


@dataclass(frozen=True)
class Judge:
    """How the sentinel scores: ``model`` None is the gold judge (held_out's ``gold_score``); otherwise a
    sequence classifier with its tokenizer and the length its run trained on."""

    name: str
    model: nn.Module | None = None
    tokenizer: object = None
    max_length: int | None = None

    @classmethod
    def load(cls, job: Job, settings: Settings, roles: Roles, rm: FinishedRun) -> Judge:
        """The judge algo.sentinel_judge names: a run on the policy's base as one more frozen adapter + head on
        the policy's model (no second base in memory), one on another base as a model of its own."""
        run = judge_run(job, settings, rm)
        if run is None:
            return cls(GOLD)
        max_length = int(run.config.algo.max_length)
        if run.model.same_base(job.model) and not run.summary.get("init_adapter"):  # one more adapter on the base
            return cls(
                str(run.run_dir), roles.attach_reward_adapter(JUDGE_ROLE, run.adapter), job.tokenizer, max_length
            )
        log.info("the sentinel's judge %s is on model=%s: loading it as a separate model", run.run_dir, run.model.name)
        tokenizer, model = load_reward_run(run, job.hardware)
        if not job.hardware.load_in_4bit:  # 4-bit models are placed by their loader
            model = model.to(roles.device)
        return cls(str(run.run_dir), model, tokenizer, max_length)

    def scores(self, roles: Roles, prompts: list[list[dict]], records: list[dict], batch_size: int) -> list[float]:
        """The judge's score of each record's response (records as held_out.evaluate returns them, one per
        prompt, in order)."""
        if self.model is None:
            return [float(r["gold_score"]) for r in records]
        conversations = [p + [{"role": "assistant", "content": r["response"]}] for p, r in zip(prompts, records)]
        with roles.precision():
            scores = score_conversations(self.model, self.tokenizer, conversations, batch_size, self.max_length)
        return scores.float().tolist()


def _mean(records: list[dict], key: str) -> float:
    return math.fsum(float(r[key]) for r in records) / len(records)


class Sentinel:
    """Reads the policy at each checkpoint (``read``), keeps the history, and at the end keeps the best
    checkpoint (``keep_best``) and reports (``finish``)."""

    def __init__(
        self,
        job: Job,
        settings: Settings,
        roles: Roles,
        judge: Judge,
        prompts: list[list[dict]],
        reward_max_length: int,
    ):
        self.job, self.settings, self.roles, self.judge = job, settings, roles, judge
        self.prompts = prompts
        self.reward_max_length = reward_max_length
        self.history: list[dict] = []

    @classmethod
    def start(
        cls,
        job: Job,
        settings: Settings,
        roles: Roles,
        rm: FinishedRun,
        prompts: list[list[dict]],
        reward_max_length: int,
    ) -> Sentinel:
        """A sentinel with its judge loaded (algo.sentinel_prompts > 0) that reads ``prompts``."""
        with costs.phase("load_model"):
            judge = Judge.load(job, settings, roles, rm)
        return cls(job, settings, roles, judge, prompts, reward_max_length)

    @property
    def path(self) -> Path:
        return self.job.run_dir / SENTINEL_JSONL

    def _write(self) -> None:
        """sentinel.jsonl is the history, rewritten whole: it never holds a row its checkpoint does not."""
        if self.job.writes:
            write_text_atomic(self.path, "".join(json.dumps(row) + "\n" for row in self.history))

    def restore(self, state: dict, step: int) -> None:
        """Continue the history a resumed checkpoint (of ``step``) saved."""
        self.history = [row for row in state.get(STATE_KEY, []) if row["step"] <= step]
        self._write()

    @torch.no_grad()
    def read(self, step: int) -> list[dict]:
        """Score the policy as it is at ``step``'s checkpoint; returns the history to save in that checkpoint.
        The processes share the prompts' chunks (as the held-out evaluation); the training RNG is not moved
        (evaluate forks it)."""
        settings = self.settings
        with costs.phase("sentinel"):

            def answer(index: int, prompts: list[list[dict]]) -> list[dict]:
                _, records = evaluate(
                    self.roles,
                    prompts,
                    settings.sampling,
                    settings.eval_greedy,
                    settings.rollout_chunk_size,
                    self.reward_max_length,
                    chunk_seed(self.job.seed, index),
                    with_gold=self.judge.model is None,
                )
                independent = self.judge.scores(self.roles, prompts, records, settings.rollout_chunk_size)
                return [record | {"independent_score": score} for record, score in zip(records, independent)]

            records = distributed.map_chunks(self.prompts, settings.rollout_chunk_size, answer)
        row = {
            "step": step,
            "proxy_score": _mean(records, "rm_score"),
            "independent_score": _mean(records, "independent_score"),
            "kl": _mean(records, "kl"),
            "judge": self.judge.name,
            "prompts": len(records),
        }
        self.history = [r for r in self.history if r["step"] < step] + [row]
        self._write()
        self.job.tracker.log({f"sentinel/{k}": row[k] for k in ("independent_score", "proxy_score", "kl")}, step=step)
        log.info(
            "sentinel at step %d: proxy %.3f, independent %.3f (%s), kl %.3f",
            step,
            row["proxy_score"],
            row["independent_score"],
            row["judge"],
            row["kl"],
        )
        return list(self.history)

    def keep_best(self, last_step: int) -> int:
        """Load the best reading's checkpoint policy into the policy (unless it is the last); returns the step
        whose policy the roles now hold."""
        best = best_reading(self.history)
        if best is None:
            log.warning("keep_best: no finite independent score in the sentinel's history; keeping step %d", last_step)
            return last_step
        if best["step"] == last_step:
            return last_step
        adapter = checkpoint.step_dir(self.job.run_dir, best["step"]) / "adapter"
        self.roles.load_policy(adapter)
        log.info(
            "keep_best: the policy is the checkpoint of step %d (independent score %.3f), not step %d's",
            best["step"],
            best["independent_score"],
            last_step,
        )
        return best["step"]

    def finish(self, kept: int) -> dict:
        """The summary's sentinel keys; writes sentinel.png and warns when the independent score peaked before the
        last checkpoint and the run did not keep that peak."""
        best = best_reading(self.history)
        last = self.history[-1] if self.history else None
        if best is not None and last is not None and best["step"] != kept:
            log.warning(
                "sentinel: the independent score peaked at step %d (%.3f) and is %.3f at step %d, while the proxy "
                "went %.3f -> %.3f: over-optimisation; algo.keep_best=true keeps the peak",
                best["step"],
                best["independent_score"],
                last["independent_score"],
                last["step"],
                best["proxy_score"],
                last["proxy_score"],
            )
        if self.job.writes and self.history:
            try:  # a plot must not lose the run
                plot_sentinel(self.history, kept, self.job.run_dir / SENTINEL_PNG)
            except Exception as err:
                log.warning("plot %s failed (%s: %s)", SENTINEL_PNG, type(err).__name__, err)
        return {
            "sentinel_judge": self.judge.name,
            "sentinel_prompts": len(self.prompts),
            "sentinel_best_step": best["step"] if best else None,
            "sentinel_best_score": best["independent_score"] if best else None,
            "sentinel_kept": kept,
        }
