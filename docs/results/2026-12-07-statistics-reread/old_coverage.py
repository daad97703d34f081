"""Coverage of the old hierarchical_bootstrap (commit 33eb289, before issue 39) through the coverage test's own
simulator (tests/tournament/test_coverage.py):

    .venv/bin/python docs/results/2026-12-07-statistics-reread/old_coverage.py [N]

N: tournaments per case (the test uses 2000; ~5 min).
"""

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.tournament.test_coverage import CASES, coverage  # noqa: E402

OLD = "33eb289:rlhf/tournament/stats.py"


def old_stats():
    source = subprocess.run(["git", "show", OLD], capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_stats.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_stats", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_stats"] = module
    spec.loader.exec_module(module)
    return module


def main(n: int) -> None:
    old = old_stats()

    def bounds(tables):
        rows = [old.hierarchical_bootstrap(list(t), n_samples=1000, seed=0) for t in tables]
        return tuple(np.array([getattr(r, k) for r in rows]) for k in ("mean", "low", "high"))

    for seeds in (3, 5, 10):
        for case in CASES:
            start = time.time()
            found = coverage(bounds, seeds, case, n=n)
            verdict = "PASS" if abs(found - 0.95) <= 0.025 else "FAIL"
            print(f"{seeds:>2} seeds  {case:<22} coverage {found:.3f}  {verdict}  ({time.time() - start:.0f}s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
