"""``python -m rlhf.tournament``: the command line (the package docstring says what a tournament does)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from rlhf.errors import ConfigError
from rlhf.tournament.budget import base_length
from rlhf.tournament.driver import StageFailed, run_stages
from rlhf.tournament.plan import (
    ARMS,
    DEFAULT_ARMS,
    DEFAULT_SEEDS,
    EVALUATE,
    EVALUATE_SHARES,
    REPO,
    Plan,
    load_plan,
    override_key,
    parse_arms,
    save_plan,
    split_overrides,
)
from rlhf.tournament.report import REPORT_MD, write_report

DEFAULT_ROOT = Path("multirun_sweeps") / "tournament"  # beside the sweeps; <timestamp> below it


def compose(config_name: str, overrides: list[str]):
    """conf/<config_name>.yaml as its entry point composes it; an override that does not fit is one error line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from rlhf.run.sweeps import register_direction_resolver

    register_direction_resolver()  # a sweep preset's ${direction:...}
    swept = [o for o in OverridesParser.create().parse_overrides(overrides) if o.is_sweep_override()]
    if swept:
        raise ConfigError(
            f"override {swept[0].input_line!r} sweeps a value: a tournament sweeps only the seeds; "
            "run one tournament per value"
        )
    try:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=overrides)
    except Exception as err:  # Hydra's composition errors: an unknown key, group or option
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"{config_name}.py {' '.join(overrides)}: {first}") from None


def new_plan(seeds: int, arms: str, directory: Path | None, overrides: list[str], budget: int = 1) -> Plan:
    """A plan from the command line, every stage's overrides composed once (a typo fails now, not after hours)."""
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: give at least 1 seed (default {DEFAULT_SEEDS})")
    directory = (directory or DEFAULT_ROOT / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(
            f"--dir {directory} is not empty: continue that tournament with --resume {directory}, or pick another --dir"
        )
    if budget < 1:
        raise ConfigError(f"--budget {budget}: give a multiple >= 1 of each arm's default length (e.g. --budget 4)")
    general, staged = split_overrides(overrides)
    cfg = compose("train", ["algo=rm", *general, *staged.get("rm", ())])
    plan = Plan(
        directory=directory,
        seeds=tuple(range(seeds)),
        arms=parse_arms(arms),
        dataset=str(cfg.dataset.name),
        overrides=general,
        stage_overrides=staged,
        group=f"tournament-{directory.name}",
        logger=OmegaConf.to_container(cfg.logger, resolve=True),
    )
    unused = sorted(set(staged) - set(plan.stages))
    if unused:
        raise ConfigError(
            f"overrides for stage {unused[0]}, which this tournament does not run (stages: {', '.join(plan.stages)})"
        )
    lengths = {}
    for stage in plan.training_stages[1:]:
        arm = compose("train", [f"algo={stage}", *general, *staged.get(stage, ())])
        if budget > 1 and stage in plan.arms:
            lengths[stage] = base_length(stage, arm.algo)
    plan = replace(plan, budget=budget, lengths=lengths)
    shared = [o for o in general if override_key(o).split(".")[0] in EVALUATE_SHARES]
    compose("evaluate", [*shared, *staged.get(EVALUATE, ())])
    return plan


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rlhf.tournament",
        description="Train rm and each arm over fixed seeds 0..N-1, evaluate every seed, and write one report "
        "(report.md, report.json, PNGs, a W&B run) with intervals over seeds and prompts.",
        epilog="Overrides reach every training stage (and evaluate.py where it shares the key: model, dataset, "
        "hardware, logger, debug); prefix one with a stage to reach only that stage: dpo:algo.beta=0.05 "
        "ppo:algo.kl_coef=0.1 evaluate:evaluation.n_prompts=128.",
    )
    p.add_argument("--seeds", type=int, help=f"seeds 0..N-1, fixed (default {DEFAULT_SEEDS})")
    p.add_argument("--arms", help=f"comma-separated, from {', '.join(ARMS)} (default {','.join(DEFAULT_ARMS)})")
    p.add_argument(
        "--budget",
        type=int,
        help="N: each arm trains N x its default steps or iterations in one run, saving and evaluating a checkpoint "
        "at every 1x (constant learning rate after warm-up); the report adds cost_frontier.png (default 1)",
    )
    p.add_argument("--dir", type=Path, help=f"the tournament's directory (default {DEFAULT_ROOT}/<timestamp>)")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue the tournament in DIR with its saved plan: finished jobs and evaluations are skipped, "
        "stopped ones continue from their checkpoint",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides: key=value, or <stage>:key=value")
    return p


def plan_from(args: argparse.Namespace) -> Plan:
    if args.resume is None:
        seeds = DEFAULT_SEEDS if args.seeds is None else args.seeds
        budget = 1 if args.budget is None else args.budget
        return new_plan(seeds, args.arms or ",".join(DEFAULT_ARMS), args.dir, args.overrides, budget)
    flags = (("--seeds", args.seeds), ("--arms", args.arms), ("--dir", args.dir), ("--budget", args.budget))
    given = [flag for flag, value in flags if value is not None]
    if given or args.overrides:
        raise ConfigError(
            f"--resume {args.resume} continues with the plan saved in its tournament.json; drop "
            f"{' '.join(given + args.overrides)} (or start a new tournament with another --dir)"
        )
    return load_plan(args.resume)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    plan = None
    try:
        plan = plan_from(args)
        save_plan(plan)
        print(
            f"tournament {plan.directory}: seeds {', '.join(map(str, plan.seeds))} (fixed), stages "
            f"{' -> '.join(plan.stages)}, dataset={plan.dataset}",
            flush=True,
        )
        run_stages(plan)
        write_report(plan.directory)
    except StageFailed as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:  # between stages, or while the report is written (a stage's run saves its own state)
        where = f": continue with python -m rlhf.tournament --resume {plan.directory}" if plan else ""
        print(f"stopped{where}", file=sys.stderr, flush=True)
        sys.exit(130)
    text = (plan.directory / REPORT_MD).read_text(encoding="utf-8")
    print(text.split("\n## Cost")[0], flush=True)
    print(f"wrote {plan.directory / REPORT_MD}, report.json and the PNGs in {plan.directory}", flush=True)
