"""One PPO iteration on a fixed rollout whose responses differ in length, in one process or under `torchrun
--nproc_per_node 2` (tests/run/test_distributed.py runs both and compares): every process samples the same greedy
rollout of the whole batch, cuts its responses to the lengths in LENGTHS (1 to 16 tokens), keeps its contiguous
share (as fit() hands it), and runs steps 2-5 of ppo_iteration on it, once for each micro batch size asked for,
each time from the same weights. The update is plain SGD, so a gradient weighed differently shows in the weights
(Adam's first step would hide a rescaled gradient). Rank 0 saves the trainable weights after each update and the
iteration's metrics: OUT_DIR/micro<m>/{weights.safetensors, metrics.json}, and the weights before: start.safetensors.

    python tests/run/ppo_update_check.py OUTPUTS_ROOT OUT_DIR MICRO [MICRO ...]   (OUTPUTS_ROOT: a finished tiny rm)
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from rlhf.algos.ppo import loop as ppo  # noqa: E402
from rlhf.config import from_node  # noqa: E402
from rlhf.modeling import generation  # noqa: E402
from rlhf.run import distributed  # noqa: E402
from tests.algos.helpers import make_job  # noqa: E402
from tests.conftest import compose_train, tiny_overrides  # noqa: E402

# Response tokens kept per row of the batch (8 prompts, minibatches of 4): lengths as unequal as real ones.
LENGTHS = [16, 3, 9, 1, 12, 5, 16, 2]
OVERRIDES = {
    "lora.dropout": "0",
    "algo.whiten_scores": "true",
    "algo.batch_size": str(len(LENGTHS)),
    "algo.sampling.max_new_tokens": str(max(LENGTHS)),  # a random tiny model never stops early
}


def main(outputs: Path, out: Path, micro_sizes: list[int]) -> None:
    cfg = compose_train(tiny_overrides(algo="ppo", **OVERRIDES), outputs_root=outputs)
    job = make_job(cfg, out / f"rank{distributed.rank()}")
    settings = from_node(ppo.Settings, cfg.algo, "algo")
    torch.manual_seed(0)
    roles, rm = ppo.build(job, settings)
    prompts = [ex["prompt"] for ex in job.data.train[: settings.batch_size]]
    whole = cut_to(generation.sample(roles, prompts, settings.sampling, greedy=True), LENGTHS, job.tokenizer)
    share = distributed.shard(len(whole))
    # The same rollout in every process: ppo_iteration samples it from this process's share of the prompts.
    ppo.sample = lambda *args, **kwargs: _rows(whole, share)
    start = {name: p.detach().clone().contiguous() for name, p in roles.trainable.items()}
    if distributed.is_main():
        save_file(start, str(out / "start.safetensors"))
    for micro in micro_sizes:
        with torch.no_grad():
            for name, p in roles.trainable.items():
                p.copy_(start[name])
        optimizer = torch.optim.SGD(roles.trainable.values(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        kl = ppo.make_kl_controller(settings.kl_coef, settings.adaptive_kl, settings.kl_target, settings.kl_horizon)
        metrics, _, _ = ppo.ppo_iteration(
            roles, optimizer, scheduler, kl, prompts[share], settings, micro, int(rm.config.algo.max_length),
            generator=torch.Generator().manual_seed(7),
        )  # fmt: skip
        if distributed.is_main():
            (out / f"micro{micro}").mkdir()
            weights = {name: p.detach().clone().contiguous() for name, p in roles.trainable.items()}
            save_file(weights, str(out / f"micro{micro}" / "weights.safetensors"))
            (out / f"micro{micro}" / "metrics.json").write_text(json.dumps(metrics, indent=1))


def cut_to(rollout: generation.Rollout, lengths: list[int], tokenizer) -> generation.Rollout:
    """``rollout`` with row i's response cut to ``lengths[i]`` tokens, its last one EOS (as if it had stopped)."""
    responses, mask = rollout.responses.clone(), torch.zeros_like(rollout.mask)
    for i, n in enumerate(lengths):
        responses[i, n - 1] = tokenizer.eos_token_id
        responses[i, n:] = tokenizer.pad_token_id
        mask[i, :n] = True
    texts = [tokenizer.decode(row[: n - 1]) for row, n in zip(responses, lengths)]
    has_eos = torch.ones(len(lengths), dtype=torch.bool)
    return generation.Rollout(rollout.prompts, rollout.prompt_ids, rollout.prompt_mask, responses, mask, has_eos, texts)


def _rows(rollout: generation.Rollout, rows: slice) -> generation.Rollout:
    """The rollout's rows ``rows`` (its tensors cut along the batch dimension)."""
    cut = {}
    for name, value in vars(rollout).items():
        cut[name] = value[rows] if value is not None else None
    return generation.Rollout(**cut)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), [int(m) for m in sys.argv[3:]])
