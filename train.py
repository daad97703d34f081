"""Train a reward model, DPO or PPO policy: `python train.py algo=rm|dpo|ppo [overrides]`."""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rlhf.errors import RlhfError
from rlhf.experiment import run_experiment

log = logging.getLogger("train")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    run_dir = HydraConfig.get().runtime.output_dir
    print(f"run directory: {run_dir}", flush=True)
    try:
        summary = run_experiment(cfg, run_dir)
    except RlhfError as err:
        # A user error: one line that names the bad value and the fix, no traceback.
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    log.info("finished: %s", {k: v for k, v in summary.items() if k.startswith("eval_")})
    return summary.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
