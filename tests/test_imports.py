"""PPO and evaluation do not import TRL or datasets: ~110 MB of resident memory both layouts would pay."""

import subprocess
import sys

from tests.conftest import REPO


def test_ppo_and_evaluation_leave_trl_and_datasets_unimported():
    code = "import sys, rlhf.algos.ppo, rlhf.evaluation.run; print(sorted(m for m in ('trl', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
