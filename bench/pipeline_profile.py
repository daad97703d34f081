"""Where the minutes of `make pipeline` go: seconds per stage and phase, tokens per second, peak memory.

    python -m bench.pipeline_profile --run                       # rm -> dpo -> ppo -> evaluate on the default
    python -m bench.pipeline_profile --run --write               # ... and its section in docs/benchmarks/pipeline.md
    python -m bench.pipeline_profile --run debug=tiny --eval-arg debug=tiny     # smoke test, ~2 minutes
    python -m bench.pipeline_profile --dirs RM_RUN DPO_RUN PPO_RUN EVAL_RUN     # finished run directories

``--run`` runs the stages of `make pipeline` one process each (positional arguments: Hydra overrides of the
three training stages; ``--eval-arg``: of evaluate.py), under a temporary outputs root (``--root DIR`` keeps them
there; outputs/latest is never touched), and times each process from outside: "startup" is the process's time
before and after its run's own wall time (imports, Hydra, the memory check, exit). The phases come from each
run's summary.json (results.json for evaluate.py), written by rlhf/run/costs.py. ``--dirs`` reads finished runs
(train.py run directories and evaluate.py output directories) without startup, and names the machine this
command runs on: give it runs from this machine. Results of ``--run`` go to the ``pipeline_profile`` section of
bench/results/<date>-<host>.json.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import common

TRAIN_STAGES = ("rm", "dpo", "ppo")  # `make pipeline`'s order; evaluate.py runs last
SECTION = "## Pipeline profile"
BENCHMARKS = common.REPO / "docs" / "benchmarks" / "pipeline.md"
STARTUP = "startup"  # the process's time outside its run's wall time, when timed from outside


@dataclass
class Stage:
    """One stage of the pipeline: ``seconds`` is the process's time when timed from outside, else its run's wall
    time; ``phases`` add up to it. Counts are None where the run does not count them (evaluate.py)."""

    name: str
    run_dir: str
    seconds: float
    phases: dict[str, float]
    tokens_forwarded: int | None = None
    tokens_backpropagated: int | None = None
    episodes: int | None = None
    peak_rss_mb: float | None = None
    allocator: str | None = None


def read_stage(run_dir: Path, process_seconds: float | None = None) -> Stage:
    """The stage a finished run directory holds: a train.py run (summary.json) or an evaluation (results.json)."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").is_file():
        record = common.read_json(run_dir / "summary.json")
        name = record["algo"]
    elif (run_dir / "results.json").is_file():
        record, name = common.read_json(run_dir / "results.json"), "evaluate"
    else:
        raise SystemExit(f"{run_dir}: no summary.json or results.json (not a finished train.py or evaluate.py run)")
    if "phase_seconds" not in record:
        raise SystemExit(f"{run_dir}: no phase_seconds in its summary (a run from before phase timing)")
    phases = dict(record["phase_seconds"])
    seconds = float(record["wall_time_s"])
    if process_seconds is not None:
        phases = {STARTUP: round(max(process_seconds - seconds, 0.0), 2), **phases}
        seconds = process_seconds
    return Stage(
        name,
        str(run_dir),
        round(seconds, 2),
        phases,
        record.get("tokens_forwarded"),
        record.get("tokens_backpropagated"),
        record.get("episodes"),
        record.get("peak_rss_mb"),
        record.get("allocator"),
    )


# --------------------------------------------------------------------------- tables


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def phase_table(stages: list[Stage]) -> str:
    """Seconds per stage and phase (largest first), as a share of the stage and of the pipeline."""
    total = sum(stage.seconds for stage in stages)
    rows = []
    for stage in stages:
        for phase, seconds in sorted(stage.phases.items(), key=lambda item: -item[1]):
            rows.append(
                [stage.name, phase, f"{seconds:.1f}", _percent(seconds, stage.seconds), _percent(seconds, total)]
            )
        rows.append(
            [f"**{stage.name}**", "**all**", f"**{stage.seconds:.1f}**", "100%", _percent(stage.seconds, total)]
        )
    rows.append(["**pipeline**", "", f"**{total:.1f}**", "", "100%"])
    return common.table(["stage", "phase", "s", "share of stage", "share of pipeline"], rows)


def cost_table(stages: list[Stage]) -> str:
    """Each stage's cost columns: time, tokens, episodes, forwarded tokens per second of the stage, peak RSS."""
    rows = [
        [
            stage.name,
            f"{stage.seconds:.1f}",
            stage.tokens_forwarded,
            stage.tokens_backpropagated,
            stage.episodes,
            f"{stage.tokens_forwarded / stage.seconds:.0f}" if stage.tokens_forwarded and stage.seconds else None,
            stage.peak_rss_mb,
        ]
        for stage in stages
    ]
    headers = [
        "stage",
        "s",
        "tokens forwarded",
        "tokens backpropagated",
        "episodes",
        "forwarded tokens/s",
        "peak RSS MB",
    ]
    return common.table(headers, rows)


def section(stages: list[Stage], command: str, machine: str, day: str) -> str:
    """docs/benchmarks/pipeline.md's "## Pipeline profile": what produced it, on which machine, and the two tables."""
    minutes = sum(stage.seconds for stage in stages) / 60
    return "\n".join(
        [
            SECTION,
            "",
            f"`{command}` ({day}, {machine}): {minutes:.1f} min in all. Phases as rlhf/run/costs.py names them "
            "(each second counted once, in the innermost phase; `other` is the run's time outside every phase, "
            f"`{STARTUP}` the process's time outside its run: imports, Hydra, exit); tokens are training's "
            "(not the held-out evaluations'), evaluate.py counts none.",
            "",
            phase_table(stages),
            "",
            cost_table(stages),
            "",
        ]
    )


def write_section(text: str, path: Path = BENCHMARKS) -> None:
    """Replace the file's "## Pipeline profile" section (up to the next "## " heading) with ``text``, or append it."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        body = "".join(lines).rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rest = "".join(lines[end:])
        body = "".join(lines[:start]) + text + ("\n" + rest if rest else "")
    path.write_text(body.rstrip("\n") + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- running


def run_pipeline(root: Path, train_overrides: list[str], eval_overrides: list[str]) -> list[Stage]:
    """`make pipeline`'s stages, one process each, under ``root`` (outputs root ``root/outputs``)."""
    outputs = f"outputs_root={root / 'outputs'}"
    stages = []
    for algo in TRAIN_STAGES:
        run_dir = root / algo
        command = [sys.executable, str(common.REPO / "train.py"), f"algo={algo}", *train_overrides]
        command += [outputs, f"hydra.run.dir={run_dir}"]
        seconds = common.run_logged(command, root / f"{algo}.log", f"train.py algo={algo}")
        stages.append(read_stage(run_dir, seconds))
        print(f"{algo}: {seconds:.0f} s", flush=True)
    run_dir = root / "evaluate"
    command = [sys.executable, str(common.REPO / "evaluate.py"), *eval_overrides, outputs, f"hydra.run.dir={run_dir}"]
    seconds = common.run_logged(command, root / "evaluate.log", "evaluate.py")
    stages.append(read_stage(run_dir, seconds))
    print(f"evaluate: {seconds:.0f} s", flush=True)
    return stages


def machine_line(info: dict, stages: list[Stage]) -> str:
    """The machine, with the allocator the runs recorded (else this process's)."""
    from bench.machine import describe

    allocators = sorted({stage.allocator for stage in stages if stage.allocator})
    return describe({**info, "allocator": ", ".join(allocators) or info["allocator"]})


def main(argv: list[str] | None = None) -> list[Stage]:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline_profile", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", action="store_true", help="run rm, dpo, ppo and evaluate.py, timing each process")
    source.add_argument("--dirs", nargs="+", type=Path, help="finished run directories, in pipeline order")
    parser.add_argument("overrides", nargs="*", help="with --run: Hydra overrides of the training stages")
    parser.add_argument("--eval-arg", action="append", default=[], help="with --run: an override of evaluate.py")
    parser.add_argument("--root", type=Path, help="with --run: keep the runs here (default: a temporary folder)")
    parser.add_argument(
        "--write", action="store_true", help='replace "## Pipeline profile" in docs/benchmarks/pipeline.md'
    )
    args = parser.parse_intermixed_args(argv)  # overrides may follow --eval-arg
    if args.dirs and (args.overrides or args.eval_arg or args.root):
        parser.error("overrides, --eval-arg and --root go with --run")
    command = " ".join(["python -m bench.pipeline_profile", *(argv if argv is not None else sys.argv[1:])])
    command = command.replace(" --write", "")
    if args.run:
        root = args.root or Path(tempfile.mkdtemp(prefix="pipeline-profile-"))
        root.mkdir(parents=True, exist_ok=True)
        stages = run_pipeline(root, args.overrides, args.eval_arg)
    else:
        stages = [read_stage(path) for path in args.dirs]
    info = common.machine_info()
    text = section(stages, command, machine_line(info, stages), datetime.date.today().isoformat())
    print(text)
    if args.run:
        path = common.save_results("pipeline_profile", {"command": command, "stages": [asdict(s) for s in stages]})
        print(f"written to {path}" + (f"; runs in {root}" if args.root else ""))
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.write:
        write_section(text, BENCHMARKS)
        print(f"{SECTION!r} written to {BENCHMARKS}")
    return stages


if __name__ == "__main__":
    main()
