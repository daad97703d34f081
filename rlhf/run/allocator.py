"""jemalloc where the machine has it: the entry points restart themselves once with it preloaded.

glibc's malloc keeps freed pages of the many differently-sized activation and KV-cache tensors a run allocates;
jemalloc returns them. Measured on these 2-core VMs (BENCHMARKS.md, "Allocator"): PPO's peak RSS ~19% lower with
step times level or faster. It must be loaded before the process allocates anything, hence LD_PRELOAD and one
``exec`` of the same command line at the very start of train.py / evaluate.py (before torch is imported, and
before a torchrun process joins its group: ``exec`` keeps the process id torchrun watches).

``RLHF_ALLOCATOR=system`` keeps the system allocator; ``RLHF_ALLOCATOR=jemalloc`` (or any path in ``LD_PRELOAD``
already) is left alone. Only Linux; where no libjemalloc is installed nothing changes
(``apt install libjemalloc2`` / ``conda install jemalloc`` provide it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "RLHF_ALLOCATOR"
CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)


def jemalloc_library() -> str | None:
    """The first installed libjemalloc (the active conda env's first), or None."""
    conda = os.environ.get("CONDA_PREFIX")
    candidates = ((f"{conda}/lib/libjemalloc.so.2",) if conda else ()) + CANDIDATES
    return next((path for path in candidates if Path(path).is_file()), None)


def current() -> str:
    """The allocator this process runs on: jemalloc when preloaded, else the system's (summary.json, bench)."""
    return "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "system"


def restart_with_jemalloc(environ: dict[str, str] | None = None, exec_=os.execve) -> None:
    """Re-run this exact command line with jemalloc preloaded, once, when it is installed and wanted."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") or env.get(ENV, "auto") != "auto":
        return
    if "jemalloc" in env.get("LD_PRELOAD", ""):
        return
    library = jemalloc_library()
    if library is None:
        return
    preload = " ".join(filter(None, [library, env.get("LD_PRELOAD", "")]))
    # RLHF_ALLOCATOR=jemalloc marks the restarted process: it never restarts again, even if the preload failed.
    exec_(sys.executable, list(sys.orig_argv), {**env, "LD_PRELOAD": preload, ENV: "jemalloc"})
