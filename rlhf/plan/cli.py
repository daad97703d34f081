"""``python -m rlhf.plan <train.py overrides>``: the predicted peak memory of each phase, before anything loads.

Exit status: 0 when the config fits (or the hardware profile sets no memory size), 1 when it does not,
2 for a config error (as train.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from rlhf.errors import RlhfError
from rlhf.plan.fits import plan, verdict
from rlhf.plan.report import render

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_train(overrides: list[str]):
    """conf/train.yaml composed with train.py's overrides (Hydra's own settings and -m are not the plan's)."""
    overrides = [o for o in overrides if not o.startswith("hydra.") and o not in ("-m", "--multirun")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def main(argv: list[str] | None = None, check_config: Callable[[DictConfig], object] | None = None) -> int:
    """``check_config``: train.py's own checks of the config (rlhf.experiment.check_config, which
    rlhf/plan/__main__.py passes: this layer cannot import it), so a value train.py refuses is never planned."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    try:
        cfg = compose_train(argv)
        if check_config is not None:
            check_config(cfg)
        result = plan(cfg)
    except (RlhfError, HydraException, OmegaConfBaseException) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(render(result))
    return 0 if verdict(result) is None else 1
