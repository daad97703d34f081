"""What every benchmark script shares: composing the config, running one configuration in its own
process, reading its run directory, statistics, markdown tables and the results file.

Each measured configuration runs in a fresh subprocess, because peak RSS (``ru_maxrss``) is per process
and never goes down. Results of one machine, boot and day go to
``bench/results/<YYYY-MM-DD>-<hostname>-<boot id>.json`` (or the folder ``RLHF_BENCH_RESULTS`` names), one
section per script, merged with what is already there.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Where results files go; RLHF_BENCH_RESULTS moves them (smoke tests write elsewhere than bench/results).
RESULTS = Path(os.environ.get("RLHF_BENCH_RESULTS") or REPO / "bench" / "results")


# --------------------------------------------------------------------------- config


def compose(overrides: list[str], config_name: str = "train"):
    """The resolved config for ``overrides`` (conf/train.yaml, or conf/<config_name>.yaml), as its entry point
    would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    import rlhf.config  # noqa: F401  registers ${native_bf16:...} (conf/hardware/auto.yaml) before resolving

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def model_dir(cfg) -> str:
    """The directory from_pretrained reads for cfg.model (converted once into the cache if needed)."""
    from rlhf.config import ModelSettings, from_node
    from rlhf.modeling.models import model_directory

    return model_directory(from_node(ModelSettings, cfg.model, "model"))


def param_counts(path: str) -> dict[str, int]:
    """Parameters of the model at ``path`` without loading weights: ``body`` (decoder layers and norms, no
    embeddings) and ``lm_head`` (vocab x hidden: the logits matmul, which a causal LM computes and a
    sequence classifier does not)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    body = sum(
        p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name and "lm_head" not in name
    )
    return {"body": body, "lm_head": config.vocab_size * config.hidden_size}


# --------------------------------------------------------------------------- running


def run_logged(command: list[str], log_path: Path, what: str, env: dict | None = None) -> float:
    """Run ``command`` from the repo root with its output in ``log_path``; exit with its tail on failure.
    Returns the wall time in seconds."""
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    if done.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        sys.stderr.write(tail + "\n")
        raise SystemExit(f"{what}: exited with {done.returncode} (log: {log_path})")
    return time.perf_counter() - started


def train(overrides: list[str], root: Path, name: str, steps_file: Path | None = None) -> Path:
    """``train.py`` with ``overrides`` into ``root/name`` (outputs root ``root/outputs``, so
    outputs/latest is never touched); with ``steps_file`` through ``python -m bench.steptimer``, which times
    every Trainer step into that file. Returns the run directory."""
    run_dir = root / name
    command = [sys.executable]
    command += ["-m", "bench.steptimer", str(steps_file)] if steps_file else [str(REPO / "train.py")]
    command += [*overrides, f"outputs_root={root / 'outputs'}", f"hydra.run.dir={run_dir}"]
    run_logged(command, root / f"{name}.log", f"train.py {' '.join(overrides)}")
    return run_dir


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def read_evaluation(run_dir: Path) -> tuple[dict, list[dict], str]:
    """(results.json, samples.jsonl's rows, base's name) of an evaluate.py run directory; one-line exits otherwise."""
    results_path, samples_path = run_dir / "results.json", run_dir / "samples.jsonl"
    if not results_path.is_file() or not samples_path.is_file():
        raise SystemExit(f"{run_dir}: no results.json / samples.jsonl: give an evaluate.py run directory")
    results = read_json(results_path)
    base = results.get("base")
    if base is None:
        raise SystemExit(f"{run_dir}: the evaluation has no base policy to pair against (policies.base=base)")
    return results, read_jsonl(samples_path), base


# --------------------------------------------------------------------------- statistics and tables


def spread(values) -> dict | None:
    """min / median / max (and n) of repeated measurements; None for no values."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def med(stats: dict | None) -> float | None:
    return None if stats is None else stats["median"]


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def show(stats: dict | None, digits: int = 2) -> str:
    """'median (min-max)' of a spread, or the bare value for one run."""
    if stats is None:
        return "-"
    if stats["n"] == 1 or stats["min"] == stats["max"]:
        return f"{stats['median']:.{digits}f}"
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}-{stats['max']:.{digits}f})"


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x ({'met' if value <= target else 'NOT met'}, target <= {target}x)"


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join("-" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the machine and the results file


def allocator() -> str:
    return os.environ.get("LD_PRELOAD") or "glibc malloc"


def machine_info() -> dict:
    """What the numbers were measured on (no model loaded)."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    versions = {}
    for package in ("torch", "transformers", "trl", "peft", "accelerate"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": memory_gb,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "allocator": allocator(),
        "python": platform.python_version(),
        "versions": versions,
    }


BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux: new at every boot


def machine_tag() -> str:
    """``<hostname>-<8 hex of the boot id>``: VMs here all call themselves "vm", so the boot id keeps two
    machines (or two boots) of one day in two files, each with its own ``machine`` reading."""
    try:
        boot = BOOT_ID.read_text().strip().replace("-", "")[:8]
    except OSError:
        boot = ""
    return socket.gethostname() + (f"-{boot}" if boot else "")


def results_path() -> Path:
    return RESULTS / f"{datetime.date.today().isoformat()}-{machine_tag()}.json"


def save_results(section: str, data: dict) -> Path:
    """Merge ``data`` as ``section`` into today's results file for this machine (atomic rename)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = results_path()
    merged = read_json(path) if path.is_file() else {}
    merged.setdefault("machine", machine_info())
    merged[section] = {"finished_at": datetime.datetime.now().isoformat(timespec="seconds"), **data}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def finish(section: str, data: dict, run_root: Path, keep: bool) -> dict:
    """Save ``data`` as ``section`` of the results file, say where, and remove the runs unless kept."""
    path = save_results(section, data)
    print(f"\nwritten to {path}" + (f"; runs kept in {run_root}" if keep else ""))
    if not keep:
        shutil.rmtree(run_root, ignore_errors=True)
    return data
