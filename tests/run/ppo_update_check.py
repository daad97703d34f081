"""One PPO iteration on a fixed rollout, in one process or under `torchrun --nproc_per_node 2` (tests/run/
test_distributed.py runs both and compares): every process samples the same greedy rollout of the whole batch
and scores it, keeps its contiguous share (as fit() hands it), and runs steps 3-5 of ppo_iteration on it.
Rank 0 saves the trainable weights after the update and the iteration's metrics.

    python tests/run/ppo_update_check.py OUTPUTS_ROOT OUT_DIR     (OUTPUTS_ROOT holds a finished tiny rm run)
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from rlhf.algos.ppo import loop as ppo  # noqa: E402
from rlhf.algos.ppo.optimizer import build_optimizer  # noqa: E402
from rlhf.config import from_node  # noqa: E402
from rlhf.modeling import generation  # noqa: E402
from rlhf.run import distributed  # noqa: E402
from tests.algos.helpers import make_job  # noqa: E402
from tests.conftest import compose_train, tiny_overrides  # noqa: E402


def main(outputs: Path, out: Path) -> None:
    overrides = tiny_overrides(algo="ppo", **{"lora.dropout": "0", "algo.whiten_scores": "true"})
    cfg = compose_train(overrides, outputs_root=outputs)
    job = make_job(cfg, out / f"rank{distributed.rank()}")
    settings = from_node(ppo.Settings, cfg.algo, "algo")
    torch.manual_seed(0)
    roles, rm = ppo.build(job, settings)
    prompts = [ex["prompt"] for ex in job.data.train[: settings.batch_size]]
    whole = generation.sample(roles, prompts, settings.sampling, greedy=True, with_logprobs=False)
    share = distributed.shard(len(whole))
    # The same rollout in every process: ppo_iteration samples it from this process's share of the prompts.
    ppo.sample = lambda *args, **kwargs: _rows(whole, share)
    optimizer = build_optimizer(
        roles.trainable.values(), job.hardware.optim, settings.learning_rate, settings.adam_eps, roles.device
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    kl = ppo.make_kl_controller(settings.kl_coef, settings.adaptive_kl, settings.kl_target, settings.kl_horizon)
    micro = ppo.micro_batch_size(job, settings)
    metrics, _, _ = ppo.ppo_iteration(
        roles, optimizer, scheduler, kl, prompts[share], settings, micro, int(rm.config.algo.max_length),
        generator=torch.Generator().manual_seed(7),
    )  # fmt: skip
    if distributed.is_main():
        weights = {name: p.detach().clone().contiguous() for name, p in roles.trainable.items()}
        save_file(weights, str(out / "weights.safetensors"))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))


def _rows(rollout: generation.Rollout, rows: slice) -> generation.Rollout:
    """The rollout's rows ``rows`` (its tensors cut along the batch dimension)."""
    cut = {}
    for name, value in vars(rollout).items():
        cut[name] = value[rows] if value is not None else None
    return generation.Rollout(**cut)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
