"""`python train.py resume=<run dir>|latest`: continue a stopped run in its own directory, with its saved config.

Hydra picks the run directory and composes the config before our code runs, so the command line is
rewritten first: the run's resolved ``.hydra/config.yaml`` becomes the primary config and
``hydra.run.dir`` the run's directory. Dotted overrides still apply (``algo.max_steps=200`` extends a
run); group overrides (``lora=r8``) and dotted keys that shape the weights (``lora.r=8``, ``model.*``) would
build a different model than the checkpoint holds, so they are refused, and so is an ``algo=`` that is not the
run's own. A run directory that cannot be written is refused before Hydra (whose file logging would fail with a
traceback). Hydra writes nothing into the run directory (``hydra.output_subdir=null``); the run's config is saved
again only once the algorithm has loaded its checkpoint (:meth:`rlhf.run.job.Job.resumed_from`), so a resume that
fails changes nothing. A run that a live process still owns (rlhf/run/lock.py) is never resumed,
and ``resume=latest`` skips it.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlhf.errors import ConfigError
from rlhf.run.lock import lock_holder
from rlhf.run.rundir import CHECKPOINTS, CONFIG, SUMMARY, has_complete_checkpoint, load_run_config, write_probe

# Config keys that shape the weights a checkpoint holds: a resumed run cannot change them.
CHECKPOINT_SHAPE = ("model.", "lora.", "algo.name", "algo.init_adapter", "algo.share_base", "algo.value_model")


def run_status(run_dir: Path) -> str | None:
    """summary.json's status, or None for a run killed before it wrote one."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("status")
    except (OSError, json.JSONDecodeError):
        return None


def _option(args: list[str], key: str) -> str | None:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{key}=")]
    return values[-1] if values else None


def latest_unfinished_run(outputs_root: Path, algo: str | None) -> Path:
    """The newest run directory under ``outputs_root/<algo>/`` that has a checkpoint and did not finish."""
    pattern = f"{algo}/*" if algo else "*/*"
    found = [
        d
        for d in Path(outputs_root).glob(pattern)
        if d.is_dir()
        and run_status(d) != "finished"
        and has_complete_checkpoint(d)
        and lock_holder(d) is None  # not a live run
    ]
    if not found:
        where = Path(outputs_root) / (algo or "<algo>")
        raise ConfigError(
            f"resume=latest: no unfinished run with a checkpoint under {where}/ that no live process owns; "
            "give resume=<run dir>"
        )
    return max(found, key=lambda d: (d / CHECKPOINTS).stat().st_mtime)


def resumable_run_dir(value: str, outputs_root: Path, algo: str | None) -> Path:
    """The run directory ``resume=<value>`` names, checked: a train.py run, not finished, with a checkpoint."""
    run_dir = latest_unfinished_run(outputs_root, algo) if value == "latest" else Path(value)
    if not (run_dir / CONFIG).is_file():
        raise ConfigError(
            f"resume={value}: {run_dir} is not a train.py run directory (no {CONFIG}); "
            "point it at outputs/<algo>/<timestamp>"
        )
    if run_status(run_dir) == "finished":
        raise ConfigError(f"resume={value}: the run in {run_dir} finished; nothing to resume (start a new run instead)")
    owner = lock_holder(run_dir)
    if owner is not None:
        raise ConfigError(
            f"resume={value}: the run in {run_dir} is still running (pid {owner}); "
            f"wait for it, or stop it first (kill -TERM {owner}) and resume then"
        )
    if not has_complete_checkpoint(run_dir):
        raise ConfigError(
            f"resume={value}: {run_dir} has no checkpoint (it stopped before the first algo.save_every steps); "
            "start it afresh"
        )
    if (err := write_probe(run_dir)) is not None:  # before Hydra, whose file logging would fail with a traceback
        raise ConfigError(
            f"resume={value}: cannot write into {run_dir} ({err.strerror}: {err.filename}); make it writable "
            "(or copy the run directory somewhere writable and resume that copy)"
        )
    return run_dir.resolve()


def _check_same_algo(value: str, run_dir: Path, algo: str | None) -> None:
    """``algo=X`` beside ``resume=<run dir>`` must name the run's own algorithm: a resume never changes it."""
    saved = load_run_config(run_dir).get("algo", {}).get("name")
    if algo is not None and algo != saved:
        raise ConfigError(
            f"resume={value}: that is an algo={saved} run, so algo={algo} cannot apply to it: drop algo={algo} "
            f"to finish the {saved} run, or start a new run with algo={algo}"
        )


def rewrite_resume_args(argv: list[str]) -> list[str]:
    """``argv`` unchanged without ``resume=``; else the arguments that make Hydra continue that run."""
    args = argv[1:]
    value = _option(args, "resume")
    if value in (None, "null"):
        return argv
    if any(a in ("-m", "--multirun") for a in args):
        raise ConfigError("resume= continues one run; it cannot be combined with -m (multirun)")
    run_dir = resumable_run_dir(value, Path(_option(args, "outputs_root") or "outputs"), _option(args, "algo"))
    _check_same_algo(value, run_dir, _option(args, "algo"))
    rest = [a for a in args if not a.startswith(("resume=", "algo=", "outputs_root="))]
    groups = [a for a in rest if not a.startswith("-") and "." not in a.split("=", 1)[0].lstrip("+~")]
    if groups:
        raise ConfigError(
            f"resume={value} continues with the run's saved config ({run_dir / CONFIG}), "
            f"so {' '.join(groups)} cannot change it: "
            f"drop it, set dotted keys instead (e.g. algo.max_steps=200), or start a new run"
        )
    fixed = [a for a in rest if a.split("=", 1)[0].lstrip("+~").startswith(CHECKPOINT_SHAPE)]
    if fixed:
        raise ConfigError(
            f"resume={value}: {fixed[0]} would change what the checkpoint holds (the model, its adapters or the PPO "
            f"roles), so it cannot apply to a resumed run: drop it, or start a new run with it"
        )
    return [
        argv[0],
        f"--config-path={run_dir / CONFIG.parent}",
        f"--config-name={CONFIG.stem}",
        f"hydra.run.dir={run_dir}",
        "hydra.output_subdir=null",  # Hydra must not rewrite the run's saved config before the checkpoint loads
        f"++resume={run_dir}",
        *rest,
    ]


def check_resume_target(resume: str | None, run_dir: Path) -> bool:
    """Whether this job resumes; a resume target other than the job's own directory is a config error."""
    if resume in (None, "null"):
        return False
    if Path(resume).resolve() != Path(run_dir).resolve():
        raise ConfigError(
            f"resume={resume}: a resumed run continues in its own directory, not {run_dir}; "
            f"use python train.py resume={resume}"
        )
    return True
