"""Compare policies on held-out prompts: `python evaluate.py [policies.<name>=PATH|base|null] [judge=RM_RUN]`."""

from rlhf.run.allocator import restart_with_jemalloc

if __name__ == "__main__":
    restart_with_jemalloc()  # first, before torch loads (rlhf/run/allocator.py)

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rlhf.errors import RlhfError
from rlhf.evaluation.run import RESULTS_MD, evaluate

log = logging.getLogger("evaluate")


def explicit_policies(overrides: list[str], cfg: DictConfig) -> set[str]:
    """Policy names set on the command line (``policies.dpo=...``, ``+policies.sft=...``, ``policies={...}``)."""
    names = set()
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "policies":
            names |= set((cfg.policies or {}).keys())
        elif key.startswith("policies."):
            names.add(key.split(".", 1)[1])
    return names


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    print(f"run directory: {run_dir}", flush=True)
    try:
        results = evaluate(cfg, run_dir, explicit_policies(list(hydra_cfg.overrides.task), cfg))
    except RlhfError as err:
        # A user error: one line that names the bad value and the fix, no traceback.
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(open(f"{run_dir}/{RESULTS_MD}", encoding="utf-8").read().split("\n## All metrics")[0], flush=True)
    log.info("finished in %.0f s: %s/%s", results["wall_time_s"], run_dir, RESULTS_MD)
    return None


if __name__ == "__main__":
    main()
