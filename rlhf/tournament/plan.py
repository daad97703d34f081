"""What a tournament runs: its plan (seeds, arms, overrides, where), saved as ``<dir>/tournament.json``, and the
command lines of its stages, built from the plan and the state of the job directories (pure but for reading
those directories; nothing here runs anything).

Stages, each a Hydra multirun over the seeds with one run directory per seed (``<dir>/<stage>/seed_<k>``), and
one evaluation per seed:

    rm          train.py -m algo=rm seed=0,1,2 hydra.sweep.dir=<dir>/rm hydra.sweep.subdir=seed_${seed}
    judge       the same with algo=judge, where conf/algo/judge.yaml exists and the dataset has no gold judge
    <arm>       dpo, then ppo / grpo / rloo with algo.reward_model=<dir>/rm/seed_${seed}
    evaluate    per seed: evaluate.py seed=<k> policies.<arm>=<dir>/<arm>/seed_<k> judge=<dir>/<rm|judge>/seed_<k>

Every stage writes its latest pointers under ``<dir>/outputs`` (outputs_root), never the repository's outputs/.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rlhf.data.gold_judge import has_gold_judge
from rlhf.data.halves import PROTOCOL_KEY, check_disjoint
from rlhf.errors import ConfigError
from rlhf.run.lock import lock_holder
from rlhf.run.resume import run_status
from rlhf.run.rundir import has_complete_checkpoint
from rlhf.tournament.budget import budget_overrides

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "train.py"
EVALUATE_PY = REPO / "evaluate.py"
JUDGE_CONFIG = REPO / "conf" / "algo" / "judge.yaml"

ARMS = ("dpo", "ppo", "grpo", "rloo")
ONLINE_ARMS = ("ppo", "grpo", "rloo")  # trained against a reward model: this seed's rm run
DEFAULT_ARMS = ("dpo", "ppo")
DEFAULT_SEEDS = 3
EVALUATE = "evaluate"
JUDGE = "judge"
STAGES = ("rm", JUDGE, *ARMS, EVALUATE)
PLAN = "tournament.json"
# evaluate.py's files (rlhf.evaluation.run.RESULTS_JSON, SAMPLES), named here so reading them loads no torch
RESULTS, SAMPLES = "results.json", "samples.jsonl"
SEED_DIR = "seed_{seed}"
# evaluate.py's groups and keys that must match the training stages' (the base, the data, the hardware, W&B):
# a general override whose key starts with one of these reaches the evaluation too.
EVALUATE_SHARES = ("model", "dataset", "hardware", "logger", "debug", "tags")
# Keys the tournament sets itself: an override of one would break the plan.
RESERVED = (
    "algo", "seed", "outputs_root", "resume", "hydra.sweep.dir", "hydra.sweep.subdir", "algo.reward_model",
    PROTOCOL_KEY,
)  # fmt: skip
_STAGE_OVERRIDE = re.compile(rf"^({'|'.join(STAGES)}):(.+=.*)$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")  # what a Hydra override value holds unquoted


def override_key(override: str) -> str:
    """``+algo.x=1`` -> ``algo.x``: the key an override sets."""
    return override.split("=", 1)[0].lstrip("+~")


def split_overrides(overrides: list[str]) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """(overrides for every training stage, {stage: its own}): ``dpo:algo.beta=0.1`` reaches the dpo stage only,
    ``evaluate:evaluation.n_prompts=32`` the evaluation only. Reserved keys are refused, naming the fix."""
    general, staged = [], {}
    for override in overrides:
        match = _STAGE_OVERRIDE.match(override)
        stage, value = (match.group(1), match.group(2)) if match else (None, override)
        key = override_key(value)
        if "=" not in value:
            raise ConfigError(f"override {override!r} has no '=': give key=value (or <stage>:key=value)")
        if key in RESERVED:
            raise ConfigError(
                f"override {override!r}: the tournament sets {key} itself (seeds 0..N-1 with --seeds, arms with "
                f"--arms, the directory with --dir); drop it"
            )
        if stage is None:
            general.append(value)
        else:
            staged.setdefault(stage, []).append(value)
    return tuple(general), {k: tuple(v) for k, v in staged.items()}


def parse_arms(text: str) -> tuple[str, ...]:
    """``dpo,ppo`` -> ("dpo", "ppo"), checked: known arms, none twice, at least one."""
    arms = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms or len(set(arms)) != len(arms):
        raise ConfigError(f"--arms {text!r}: give distinct arms from {', '.join(ARMS)}, e.g. --arms dpo,ppo")
    return arms


@dataclass(frozen=True)
class Plan:
    """One tournament: every training stage over ``seeds``, then one evaluation per seed."""

    directory: Path
    seeds: tuple[int, ...]
    arms: tuple[str, ...]
    dataset: str  # the composed dataset.name: it decides the gold judge and so the judge stage
    overrides: tuple[str, ...] = ()
    stage_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    group: str = ""  # the W&B group of every stage and of the report
    logger: dict = field(default_factory=dict)  # the composed logger settings (the report's W&B run)
    budget: int = 1  # --budget: each arm at budget x its default length, checkpoints at every 1x (budget.py)
    lengths: dict[str, tuple[int, float]] = field(default_factory=dict)  # arm -> (default length, warm-up ratio)
    python: str = field(default=sys.executable, compare=False)

    def __post_init__(self):
        if not _SAFE_PATH.match(str(self.directory)):
            raise ConfigError(
                f"--dir {self.directory}: use a path of letters, digits and _ . / - only (it goes into Hydra overrides)"
            )

    @property
    def gold(self) -> bool:
        return has_gold_judge(self.dataset)

    @property
    def judge_stage(self) -> bool:
        """Train algo=judge per seed and judge with it: what evaluate.py's judge=auto reads where the dataset has
        no gold judge (the proxy, this seed's rm, judges where it has one)."""
        return not self.gold and JUDGE_CONFIG.is_file()

    @property
    def outputs_root(self) -> Path:
        return self.directory / "outputs"

    @property
    def judge_from(self) -> str:
        """The stage whose run of a seed judges that seed's evaluation."""
        return JUDGE if self.judge_stage else "rm"

    @property
    def training_stages(self) -> list[str]:
        return ["rm", *([JUDGE] if self.judge_stage else []), *self.arms]

    @property
    def stages(self) -> list[str]:
        return [*self.training_stages, EVALUATE]

    def job_dir(self, stage: str, seed: int) -> Path:
        return self.directory / stage / SEED_DIR.format(seed=seed)

    def seed_path(self, stage: str) -> str:
        """``<dir>/<stage>/seed_${seed}``: the job directory of the seed of the job Hydra runs (an interpolation)."""
        return f"{self.directory / stage}/{SEED_DIR.format(seed='${seed}')}"

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("python")
        data["directory"] = str(self.directory)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        return cls(
            directory=Path(data["directory"]),
            seeds=tuple(data["seeds"]),
            arms=tuple(data["arms"]),
            overrides=tuple(data["overrides"]),
            stage_overrides={k: tuple(v) for k, v in data["stage_overrides"].items()},
            dataset=data["dataset"],
            group=data["group"],
            logger=data["logger"],
            budget=int(data.get("budget", 1)),  # a plan saved before the budget axis: 1
            lengths={k: tuple(v) for k, v in data.get("lengths", {}).items()},
        )


def save_plan(plan: Plan) -> Path:
    path = plan.directory / PLAN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def load_plan(directory: Path) -> Plan:
    path = Path(directory) / PLAN
    if not path.is_file():
        raise ConfigError(f"--resume {directory}: no {PLAN} there; give a directory a tournament wrote")
    plan = Plan.from_json(json.loads(path.read_text(encoding="utf-8")))
    return replace(plan, directory=Path(directory).resolve())  # moved since: its own place wins


# --------------------------------------------------------------------------- command lines


def _sweep(plan: Plan, stage: str, seeds: list[int]) -> list[str]:
    """The seeds as a multirun, one job directory per seed in <dir>/<stage>, latest pointers in <dir>/outputs."""
    return [
        f"seed={','.join(map(str, seeds))}",
        f"hydra.sweep.dir={plan.directory / stage}",
        f"hydra.sweep.subdir={SEED_DIR.format(seed='${seed}')}",
        f"outputs_root={plan.outputs_root}",
    ]


def _group(plan: Plan, overrides: tuple[str, ...]) -> list[str]:
    """The tournament's W&B group, unless the overrides name one."""
    return [] if any(override_key(o) == "logger.group" for o in overrides) else [f"logger.group={plan.group}"]


def train_command(plan: Plan, stage: str, seeds: list[int]) -> list[str]:
    """``train.py -m algo=<stage>`` over ``seeds``; the online arms against each seed's own reward model."""
    own = plan.stage_overrides.get(stage, ())
    reward = [f"algo.reward_model={plan.seed_path('rm')}"] if stage in ONLINE_ARMS else []
    budget = budget_overrides(stage, *plan.lengths[stage], plan.budget) if stage in plan.lengths else []
    # with a judge stage, the judge protocol: rm, dpo (and sft) on the proxy half, the judge on the other
    protocol = [f"{PROTOCOL_KEY}=true"] if plan.judge_stage else []
    return [
        plan.python,
        str(TRAIN),
        "-m",
        f"algo={stage}",
        *_sweep(plan, stage, seeds),
        *reward,
        *protocol,
        *_group(plan, plan.overrides + own),
        *plan.overrides,
        *own,
        *budget,  # last: the arm's own length override is already in its base length
    ]


def resume_command(plan: Plan, run_dir: Path) -> list[str]:
    """Continue one stopped job from its checkpoint, with its saved config."""
    return [plan.python, str(TRAIN), f"resume={run_dir}"]


def evaluate_command(plan: Plan, seed: int) -> list[str]:
    """One ``evaluate.py`` for ``seed`` (its sampling seed too) into ``<dir>/evaluate/seed_<k>``: base and every arm
    of that seed, judged by that seed's reward model. One run per seed, not a multirun: an evaluation writes no
    summary.json, so the sweep callback would count its jobs failed."""
    shared = tuple(o for o in plan.overrides if override_key(o).split(".")[0] in EVALUATE_SHARES)
    own = plan.stage_overrides.get(EVALUATE, ())
    policies = ["++policies.base=base"] + [
        f"++policies.{arm}={plan.job_dir(arm, seed) if arm in plan.arms else 'null'}" for arm in ARMS
    ]
    return [
        plan.python,
        str(EVALUATE_PY),
        f"seed={seed}",
        f"hydra.run.dir={plan.job_dir(EVALUATE, seed)}",
        f"outputs_root={plan.outputs_root}",
        *policies,
        f"judge={plan.job_dir(plan.judge_from, seed)}",
        *_group(plan, shared + own),
        *shared,
        *(["evaluation.checkpoints=true"] if plan.budget > 1 else []),
        *own,
    ]


def check_judges(plan: Plan) -> None:
    """Before the evaluations: refuse (one line) a seed whose judge may share training pairs with that seed's
    reward model or DPO run, or whose overlap cannot be checked (rlhf/data/halves.py; by content, from the halves
    each summary.json records). Nothing to check where the gold judge judges."""
    if not plan.judge_stage:
        return
    for seed in plan.seeds:
        judge_dir = plan.job_dir(JUDGE, seed)
        judge = _summary(judge_dir)
        for stage in ("rm", *(a for a in plan.arms if a not in ONLINE_ARMS)):
            other = plan.job_dir(stage, seed)
            check_disjoint("judge", judge_dir, judge, f"seed {seed}'s {stage} run", other, _summary(other))


def _summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


# --------------------------------------------------------------------------- what is left to run

FINISHED, NEW, RESUME, RETRY = "finished", "new", "resume", "retry"


def job_state(plan: Plan, stage: str, seed: int) -> str:
    """finished (skip it) | new (never started) | resume (stopped with a checkpoint: continue it) | retry (stopped
    before a checkpoint, or an evaluation without results: run it again). A job a live process owns is an error."""
    run_dir = plan.job_dir(stage, seed)
    if not run_dir.exists():
        return NEW
    if stage == EVALUATE:
        return FINISHED if (run_dir / RESULTS).is_file() else RETRY
    owner = lock_holder(run_dir)
    if owner is not None:
        raise ConfigError(
            f"{run_dir} is in use by a live run (pid {owner}): wait for it, or stop it (kill -TERM {owner}), "
            "then --resume again"
        )
    if run_status(run_dir) == FINISHED:
        return FINISHED
    return RESUME if has_complete_checkpoint(run_dir) else RETRY


@dataclass(frozen=True)
class Step:
    """One command of a stage: ``argv``, the seeds it covers, and the job directories to set aside before it
    (runs that stopped before their first checkpoint: a new run never mixes its files with an old one's)."""

    argv: list[str]
    seeds: tuple[int, ...]
    set_aside: tuple[Path, ...] = ()


def stage_steps(plan: Plan, stage: str) -> list[Step]:
    """The commands that finish ``stage``: one multirun over its new (and retried) seeds, and one ``resume=`` per
    job that stopped with a checkpoint; for the evaluation one run per seed without results. [] when every seed
    finished."""
    states = {seed: job_state(plan, stage, seed) for seed in plan.seeds}
    fresh = [s for s in plan.seeds if states[s] in (NEW, RETRY)]
    if stage == EVALUATE:  # an evaluation without results.json is run again into its directory
        return [Step(evaluate_command(plan, seed), (seed,)) for seed in fresh]
    steps = []
    if fresh:
        retried = tuple(plan.job_dir(stage, s) for s in fresh if states[s] == RETRY)
        steps.append(Step(train_command(plan, stage, fresh), tuple(fresh), retried))
    for seed in plan.seeds:
        if states[seed] == RESUME:
            steps.append(Step(resume_command(plan, plan.job_dir(stage, seed)), (seed,)))
    return steps


def aside_name(run_dir: Path) -> Path:
    """Where a job directory that is run again goes: a hidden sibling (sweep reports skip hidden folders)."""
    n = 1
    while (run_dir.parent / f".{run_dir.name}.attempt-{n}").exists():
        n += 1
    return run_dir.parent / f".{run_dir.name}.attempt-{n}"
