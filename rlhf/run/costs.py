"""Where a run's minutes and compute go: wall seconds per phase, tokens forwarded and backpropagated, episodes.

    with costs.phase("generation"):            # its wall seconds go to phase_seconds["generation"]
        rollout = sample(...)
    @costs.phase("load_model")                 # the same for every call of a function
    def build(job): ...
    costs.add_tokens(forwarded=n, backpropagated=n)
    costs.add_episodes(len(prompts))

One accumulator per process, started afresh by each run (:func:`reset`: rlhf/experiment.py for train.py,
rlhf/evaluation/run.py for evaluate.py). Its :meth:`Costs.totals` go into summary.json (results.json for
evaluate.py): ``phase_seconds`` ({phase: s} in the order the phases first opened, and ``other``: the wall time no
phase covered), ``tokens_forwarded``, ``tokens_backpropagated`` and ``episodes``.

**Nesting.** Each second counts once, in the innermost open phase (a profiler's self time): an outer phase's
seconds leave out those of the phases opened, or recorded (:func:`record`), inside it. So the phases never add
up to more than the wall time, and a phase nested in one of the same name counts its time once. A phase left by
an exception keeps the time it ran.

The phases (what the algorithms name them):

    setup          config, tracker, tokenizer and data, before the algorithm starts (train.py, evaluate.py)
    load_model     reading weights: base, adapters, reward model, judge
    prepare_data   tokenising / cutting the data, building a Trainer and its datasets
    training       a Trainer's optimizer steps (forward, backward, step), their data loading and logging; for
                   GRPO / RLOO the update, with their rollouts split off as generation and scoring
    generation     sampling responses (PPO, GRPO and RLOO rollouts; evaluate.py's policies)
    scoring        what the frozen models say about a rollout: reward model, reference (and old-policy, value)
                   log-probs (PPO step 2; GRPO / RLOO: the rollout's scoring and advantages)
    advantages     PPO's per-token rewards and GAE
    update         PPO's epochs of forward + backward + optimizer steps
    evaluation     held-out evaluation before and after training
    sentinel       PPO's independent scoring of each checkpoint (algo.sentinel_prompts: rlhf/algos/ppo/sentinel.py)
    checkpoint     writing checkpoints (and, on resume, loading one)
    final_save     adapter/, the latest pointer and the W&B model artifact
    kl_logprobs, judge_scoring, gold_scoring, pair_logprobs, report    evaluate.py's steps

**Tokens** are those of training, not of the held-out evaluations (those show in ``phase_seconds`` only): the
non-padding tokens (attention mask) of every forward of a training batch, rollout or its scoring, and of every
backward. A rollout forwards its prompt and response tokens once; the reward model's read of a rollout counts
its prompt and response tokens as the policy tokenised them (it renders the same conversation with its own chat
template). **Episodes**: one per sampled response (PPO, GRPO, RLOO) or per training example (a preference pair
for rm and dpo, a prompt + response for sft), each time it is trained on.

Under several processes (torchrun): each process counts its own tokens and episodes, and where training ends
(every process is there) :func:`sum_counts_over_ranks` makes them the launch's; the seconds stay the process's
own, and rank 0's go into summary.json. A run that fails or is stopped before that point reports rank 0's own.
A resumed run's totals, like its ``wall_time_s``, count the resumed process only.

**Checkpoints** record the run's cost so far (:func:`snapshot`, a collective: the counts are the launch's) as
CHECKPOINT_COSTS in the checkpoint folder, open phases included; a resumed run carries the checkpoint it loaded
(:func:`carry`), so each checkpoint's cost is cumulative from the run's first step. evaluate.py plots a run's
checkpoints against :func:`training_seconds` (the phases that make the policy) and :func:`training_flops`.

One thread: phases are not thread-safe (nothing here times work on other threads).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rlhf.run import distributed

OTHER = "other"  # phase_seconds' key for the wall time no phase covered
CHECKPOINT_COSTS = "costs.json"  # in each checkpoint folder: the run's cost up to that checkpoint (snapshot)
# The phases that make the policy (held-out evaluation, the sentinel, saving and loading are measurement and
# overhead, alike for every budget): what a cost curve's "training seconds" add up.
TRAINING_PHASES = ("training", "generation", "scoring", "advantages", "update")


@dataclass
class _Open:
    """A phase being timed: when it started and the seconds of the phases inside it so far."""

    started: float
    name: str = ""
    inner: float = 0.0


@dataclass
class Costs:
    """The accumulator: seconds per phase (self time, see the module docstring), tokens and episodes."""

    seconds: dict[str, float] = field(default_factory=dict)
    tokens_forwarded: int = 0
    tokens_backpropagated: int = 0
    episodes: int = 0
    clock: Callable[[], float] = time.perf_counter  # seconds; tests give a fake one
    _open: list[_Open] = field(default_factory=list)  # the open phases, innermost last
    carried: dict | None = None  # a resumed run: the cost its checkpoint recorded (carry)

    def __post_init__(self):
        self.started = self.clock()

    @contextmanager
    def phase(self, name: str):
        self.seconds.setdefault(name, 0.0)  # listed in the order phases first open
        frame = _Open(self.clock(), name)
        self._open.append(frame)
        try:
            yield
        finally:
            self._open.pop()
            elapsed = self.clock() - frame.started
            self.seconds[name] += elapsed - frame.inner
            if self._open:
                self._open[-1].inner += elapsed

    def record(self, name: str, seconds: float) -> None:
        """``seconds`` timed elsewhere (e.g. between two Trainer events) as phase ``name``; they must lie inside the
        innermost open phase, if any, whose own seconds lose them (so each second still counts once)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        if self._open:
            self._open[-1].inner += seconds

    def add_tokens(self, forwarded=0, backpropagated=0) -> None:
        """Add token counts (ints or 0-d tensors)."""
        self.tokens_forwarded += int(forwarded)
        self.tokens_backpropagated += int(backpropagated)

    def add_episodes(self, n) -> None:
        self.episodes += int(n)

    def totals(self, wall_seconds: float) -> dict:
        """The summary fields for a run of ``wall_seconds``: phase seconds (rounded to 0.01 s) with ``other``, the
        wall time outside every finished phase, and the counts."""
        phases = {name: round(seconds, 2) for name, seconds in self.seconds.items()}
        phases[OTHER] = round(max(wall_seconds - sum(self.seconds.values()), 0.0), 2)
        return {
            "phase_seconds": phases,
            "tokens_forwarded": self.tokens_forwarded,
            "tokens_backpropagated": self.tokens_backpropagated,
            "episodes": self.episodes,
        }

    def so_far(self) -> dict:
        """The cost since this accumulator started, plus what it carries, with the open phases' seconds up to
        now (each in its own phase, as when they close): ``totals`` and ``wall_time_s``."""
        now = self.clock()
        seconds = dict(self.seconds)
        for frame, inner in zip(self._open, self._open[1:] + [None]):
            inner_elapsed = 0.0 if inner is None else now - inner.started
            seconds[frame.name] = seconds.get(frame.name, 0.0) + (now - frame.started) - frame.inner - inner_elapsed
        wall = now - self.started
        out = Costs(seconds=seconds, tokens_forwarded=self.tokens_forwarded,
                    tokens_backpropagated=self.tokens_backpropagated, episodes=self.episodes).totals(wall)  # fmt: skip
        out["wall_time_s"] = round(wall, 2)
        return _plus(out, self.carried) if self.carried else out


def _plus(a: dict, b: dict) -> dict:
    """Two cost records (totals + wall_time_s) added field by field, phase by phase."""
    phases = dict(a["phase_seconds"])
    for name, seconds in b.get("phase_seconds", {}).items():
        phases[name] = round(phases.get(name, 0.0) + seconds, 2)
    keys = ("tokens_forwarded", "tokens_backpropagated", "episodes")
    return {"phase_seconds": phases, **{k: a[k] + b.get(k, 0) for k in keys},
            "wall_time_s": round(a["wall_time_s"] + b.get("wall_time_s", 0.0), 2)}  # fmt: skip


def training_seconds(cost: dict) -> float:
    """The seconds of a cost record's TRAINING_PHASES."""
    return float(sum(cost["phase_seconds"].get(name, 0.0) for name in TRAINING_PHASES))


def training_flops(cost: dict, parameters: int) -> float:
    """Training FLOPs of a cost record on a model of ``parameters`` weights: 2 per weight per token forwarded,
    and 2 per weight per token backpropagated (the input gradients; LoRA's frozen weights need no weight
    gradients, so a backward costs about one forward, not two). Attention's own FLOPs are left out (small next
    to the weights' at these lengths)."""
    return 2.0 * parameters * (cost["tokens_forwarded"] + cost["tokens_backpropagated"])


_costs = Costs()


def current() -> Costs:
    """This process's accumulator."""
    return _costs


def reset() -> Costs:
    """A fresh accumulator for a new run (the previous one's totals are dropped)."""
    global _costs
    _costs = Costs()
    return _costs


@contextmanager
def phase(name: str):
    """Time the block (or, as a decorator, each call) as phase ``name`` of the current accumulator. It is looked up
    when the block starts, so a function decorated at import time times into each run's accumulator."""
    with _costs.phase(name):
        yield


def record(name: str, seconds: float) -> None:
    _costs.record(name, seconds)


def add_tokens(forwarded=0, backpropagated=0) -> None:
    _costs.add_tokens(forwarded, backpropagated)


def add_episodes(n) -> None:
    _costs.add_episodes(n)


def snapshot() -> dict:
    """The run's cost so far (:meth:`Costs.so_far`) with the launch's counts: a collective under several
    processes (every process calls it, e.g. where a checkpoint is saved); nothing is changed."""
    out = _costs.so_far()
    if distributed.world_size() > 1:
        import torch

        keys = ("tokens_forwarded", "tokens_backpropagated", "episodes")
        summed = distributed.sum_over_ranks(torch.tensor([out[k] for k in keys], dtype=torch.float64)).tolist()
        out.update({k: round(v) for k, v in zip(keys, summed)})
    return out


def recorded(checkpoint) -> dict | None:
    """The cost a checkpoint folder recorded (CHECKPOINT_COSTS), or None (saved before checkpoints did)."""
    path = Path(checkpoint) / CHECKPOINT_COSTS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write(folder, cost: dict) -> None:
    """Record ``cost`` (a snapshot) in a checkpoint folder being written."""
    (Path(folder) / CHECKPOINT_COSTS).write_text(json.dumps(cost) + "\n", encoding="utf-8")


def carry(checkpoint) -> None:
    """A resumed run continues from ``checkpoint``: later snapshots add the cost it recorded (if any)."""
    _costs.carried = recorded(checkpoint)


def sum_counts_over_ranks() -> None:
    """Make the tokens and episodes the launch's: every process of a launch calls it at the same point (where
    training ends); one process alone is left as it is."""
    if distributed.world_size() == 1:
        return
    import torch

    counts = torch.tensor([_costs.tokens_forwarded, _costs.tokens_backpropagated, _costs.episodes], dtype=torch.float64)
    forwarded, backpropagated, episodes = distributed.sum_over_ranks(counts).tolist()
    _costs.tokens_forwarded, _costs.tokens_backpropagated, _costs.episodes = (
        round(forwarded),
        round(backpropagated),
        round(episodes),
    )
