"""A seeded PPO (or GRPO / RLOO) lever study from finished runs: each setting's held-out gold gain, its cost, and
its paired difference against a baseline setting, with intervals over seeds and prompts.

    python train.py -m algo=ppo seed=0,1,2,3,4 algo.value_model=adapter,policy algo.reward_model=RM_RUN
    python -m bench.ppo_levers multirun_sweeps/<timestamp>/*/ --baseline algo.value_model=adapter
    python -m bench.ppo_levers RUN_DIR ... --section ppo_levers_critic     # ... and into bench/results/

A run's *arm* is its command-line overrides (.hydra/overrides.yaml) less ``seed`` and less those every run
shares (the reward model, the evaluation size); runs of one arm differ only in their seed. Per run, from its
eval_samples.jsonl: the gold score of each held-out prompt's response at the start (the reference, KL 0) and
at the end, drawn with the same seed, so the *gain* final - start is paired prompt by prompt. From
summary.json: the final KL and the training seconds (wall time less the held-out evaluation).

Per arm: the gold gain (crossed interval: seeds x the same prompts), in how many seeds the gain's own paired
interval excludes 0, the final KL, training seconds, and gain per 100 s of training. Against the baseline: the
final gold difference, paired by seed and prompt (both arms answered the same prompts). An arm that started
from another policy than the baseline (``algo.init_adapter``: its start scores differ) also gets its final
against the baseline's start, the base model: its gain counts from its own start, the SFT adapter.
Only hh_synthetic runs have a gold judge; elsewhere the study reads ``--score rm_score`` (the proxy PPO
optimised: a weaker answer, say so).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench import common
from rlhf.evaluation.metrics import Interval, paired_difference, verdict
from rlhf.tournament.stats import crossed_interval, paired_differences

EVAL_SAMPLES = "eval_samples.jsonl"  # rlhf/algos/ppo/loop.py's held-out records: when, step, prompt, gold_score, ...
ONLINE_ALGOS = ("ppo", "grpo", "rloo")  # the runs that write it (GRPO / RLOO: rlhf/algos/online_trl.py, as PPO)


@dataclass
class Run:
    """One finished online run (PPO, GRPO, RLOO): start and final per-prompt scores [P] on the same prompts."""

    path: Path
    seed: int
    overrides: tuple[str, ...]  # without seed=
    start: np.ndarray
    final: np.ndarray
    kl: float
    train_seconds: float
    wall_seconds: float


def _overrides(run_dir: Path) -> tuple[list[str], int]:
    """(the run's command-line overrides less seed=..., its seed), from .hydra/overrides.yaml and config.yaml."""
    from omegaconf import OmegaConf

    hydra_dir = run_dir / ".hydra"
    if not (hydra_dir / "config.yaml").is_file():
        raise SystemExit(f"{run_dir}: no .hydra/config.yaml: give train.py run directories (or multirun job dirs)")
    listed = (
        OmegaConf.to_container(OmegaConf.load(hydra_dir / "overrides.yaml"))
        if (hydra_dir / "overrides.yaml").is_file()
        else []
    )
    seed = int(OmegaConf.load(hydra_dir / "config.yaml").seed)
    return [o for o in listed if not o.startswith("seed=")], seed


def read_run(run_dir: Path, score: str = "gold_score") -> Run:
    """The study's view of one finished run directory (a one-line SystemExit when it is not one)."""
    run_dir = Path(run_dir)
    summary_path, samples_path = run_dir / "summary.json", run_dir / EVAL_SAMPLES
    if not summary_path.is_file() or not samples_path.is_file():
        raise SystemExit(f"{run_dir}: no summary.json / {EVAL_SAMPLES}: not a finished PPO / GRPO / RLOO run")
    summary = common.read_json(summary_path)
    if summary.get("algo") not in ONLINE_ALGOS:
        raise SystemExit(f"{run_dir}: algo={summary.get('algo')}, the lever study reads {', '.join(ONLINE_ALGOS)} runs")
    rows = common.read_jsonl(samples_path)
    start = [r for r in rows if r["when"] == "start"]
    final = [r for r in rows if r["when"] == "final"]
    if not final or len(start) != len(final) or [r["prompt"] for r in start] != [r["prompt"] for r in final]:
        raise SystemExit(f"{run_dir}: {EVAL_SAMPLES} lacks a final evaluation on the start's prompts")
    if any(r.get(score) is None for r in start + final):
        raise SystemExit(
            f"{run_dir}: no {score} in {EVAL_SAMPLES} (gold_score exists on hh_synthetic only: --score rm_score)"
        )
    overrides, seed = _overrides(run_dir)
    wall = float(summary["wall_time_s"])
    evaluation = float(summary.get("phase_seconds", {}).get("evaluation", 0.0))
    return Run(
        run_dir,
        seed,
        tuple(overrides),
        np.array([r[score] for r in start], dtype=np.float64),
        np.array([r[score] for r in final], dtype=np.float64),
        float(summary["kl_final"]),
        wall - evaluation,
        wall,
    )


def group_arms(runs: list[Run]) -> dict[str, list[Run]]:
    """arm label -> its runs by seed; the label drops the overrides every run shares."""
    shared = set.intersection(*(set(r.overrides) for r in runs)) if runs else set()
    arms: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        label = " ".join(sorted(o for o in run.overrides if o not in shared)) or "(shared settings)"
        arms[label].append(run)
    for label, members in arms.items():
        seeds = [r.seed for r in members]
        if len(set(seeds)) != len(seeds):
            raise SystemExit(f"arm {label!r} has seed(s) twice: {sorted(seeds)}; give each (arm, seed) one run")
        members.sort(key=lambda r: r.seed)
    return dict(arms)


def arm_stats(members: list[Run], samples: int, confidence: float) -> dict:
    """The arm's gain over seeds and prompts, per-seed verdicts, KL and cost."""
    gains = [r.final - r.start for r in members]
    per_seed = [paired_difference(r.final, r.start, samples, confidence) for r in members]
    gain = crossed_interval(gains, confidence)
    seconds = float(np.mean([r.train_seconds for r in members]))
    return {
        "seeds": [r.seed for r in members],
        "gain": asdict(gain),
        "gain_per_seed": [round(float(i.mean), 4) for i in per_seed],
        "seeds_above_zero": sum(i.low > 0 for i in per_seed),
        "final": float(np.mean([r.final.mean() for r in members])),
        "kl_final": float(np.mean([r.kl for r in members])),
        "train_seconds": seconds,
        "wall_seconds": float(np.mean([r.wall_seconds for r in members])),
        "gain_per_100s": float(gain.mean) / seconds * 100 if seconds > 0 else None,
        "runs": [str(r.path) for r in members],
    }


def against(
    arm: list[Run], baseline: list[Run], samples: int, confidence: float, baseline_when: str = "final"
) -> Interval:
    """arm's final score - baseline's final (or, ``baseline_when="start"``, the baseline's starting policy's:
    the base model, for an arm that starts elsewhere, e.g. from an SFT adapter), paired by seed and prompt,
    over the seeds both ran."""
    seeds = sorted({r.seed for r in arm} & {r.seed for r in baseline})
    if not seeds:
        raise SystemExit("an arm and the baseline share no seed: nothing to pair")
    pick = lambda runs, when: [getattr(next(r for r in runs if r.seed == s), when) for s in seeds]  # noqa: E731
    for a, b in zip(pick(arm, "start"), pick(baseline, "start")):
        if a.shape != b.shape:
            raise SystemExit("an arm and the baseline evaluated different prompts: pair runs of one evaluation size")
    return crossed_interval(paired_differences(pick(arm, "final"), pick(baseline, baseline_when)), confidence)


def same_start(arm: list[Run], baseline: list[Run]) -> bool:
    """Whether the arm's runs started from the baseline's policy: equal start scores, seed by seed."""
    starts = {r.seed: r.start for r in baseline}
    return all(r.seed not in starts or np.array_equal(r.start, starts[r.seed]) for r in arm)


def _interval(stat) -> str:
    return f"{stat.mean:+.3f} [{stat.low:+.3f}, {stat.high:+.3f}]"


def report(arms: dict[str, list[Run]], baseline: str, samples: int, confidence: float, score: str) -> tuple[str, dict]:
    """(a markdown table, the numbers) of the study."""
    if baseline not in arms:
        raise SystemExit(f"--baseline {baseline!r} is not an arm; the arms are: {sorted(arms)}")
    stats = {label: arm_stats(members, samples, confidence) for label, members in arms.items()}
    rows, out = [], {"score": score, "confidence": confidence, "baseline": baseline, "arms": {}}
    starts_elsewhere = False  # an arm that started from another policy than the baseline's (algo.init_adapter)
    for label, members in arms.items():
        s = stats[label]
        gain = Interval(**s["gain"])
        if label == baseline:
            diff_text, verdict_text, diff = "(baseline)", "-", None
        else:
            diff = against(members, arms[baseline], samples, confidence)
            diff_text, verdict_text = _interval(diff), verdict(diff, label, "baseline", confidence)
        rows.append(
            [
                label,
                len(members),
                _interval(gain),
                f"{s['seeds_above_zero']}/{len(members)}",
                " ".join(f"{g:+.3f}" for g in s["gain_per_seed"]),
                f"{s['kl_final']:.2f}",
                f"{s['train_seconds']:.0f}",
                f"{s['gain_per_100s']:+.4f}" if s["gain_per_100s"] is not None else "-",
                diff_text,
                verdict_text,
            ]
        )
        from_base = None
        if not same_start(members, arms[baseline]):
            from_base = against(members, arms[baseline], samples, confidence, baseline_when="start")
            starts_elsewhere = True
        rows[-1].append(_interval(from_base) if from_base else "= gain")
        out["arms"][label] = {
            **s,
            "vs_baseline": None if diff is None else [diff.mean, diff.low, diff.high],
            "vs_baseline_start": None if from_base is None else [from_base.mean, from_base.low, from_base.high],
        }
    name = score.replace("_score", "")
    headers = [
        "arm",
        "seeds",
        f"{name} gain (final - start)",
        "seeds > 0",
        "gain per seed",
        "KL final",
        "train s",
        "gain / 100 s",
        f"final {name} - baseline",
        "verdict",
        f"final {name} - baseline's start",
    ]
    if not starts_elsewhere:  # every arm's gain is already over the baseline's start
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    return common.table(headers, rows), out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ppo_levers",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "runs", nargs="+", type=Path, help="finished PPO / GRPO / RLOO run directories (multirun job dirs)"
    )
    parser.add_argument("--baseline", help="the arm the others are paired against (default: the first, sorted)")
    parser.add_argument("--score", default="gold_score", help="gold_score (hh_synthetic) or rm_score")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--section", help="also merge the numbers into bench/results/<date>-<host>.json")
    args = parser.parse_args(argv)
    runs = [read_run(path, args.score) for path in args.runs]
    arms = group_arms(runs)
    baseline = args.baseline or sorted(arms)[0]
    text, numbers = report(arms, baseline, args.samples, args.confidence, args.score)
    print(text)
    if args.section:
        print(f"\nwritten to {common.save_results(args.section, numbers)}")
    return numbers


if __name__ == "__main__":
    main()
