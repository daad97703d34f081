"""The comparison: every policy answers the same held-out prompts; a judge reward model, the gold judge
(hh_synthetic) and the policies' own log-probs score them; results.json, results.md, plots and W&B.

    1. resolve   the policies (base | run directories) and the judge rm run; one base model, adapters by name
    2. sample    each policy answers the first ``n_prompts`` test prompts ``samples_per_prompt`` times (seeded:
                 every policy draws with the same random stream; or greedy), ``chunk_size`` prompts per generate
                 call, shortest first, and
                 responses per reference forward; KL to its reference on its own samples (its own log-probs from
                 the decoding's logits), length, EOS (batching.py)
    3. judge     judge-RM and gold scores of every response and of the dataset's chosen responses (one judge call)
    4. pairs     summed log-probs of the first ``n_pairs`` test pairs under each policy and reference ->
                 implicit-reward accuracy (base: length-normalised log-likelihood accuracy)
    5. report    metrics with bootstrap intervals, win rates, hacking flags, paired differences of every pair
                 of policies with verdicts -> files (samples.jsonl: per-prompt scores), plots, W&B

With ``samples_per_prompt`` k > 1 a prompt's score is the mean of its k responses' (win rates: the share of its
k responses that win), so every interval still resamples prompts, the unit the test split draws, and each
prompt's sampling noise shrinks k-fold in variance.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlhf.config import ModelSettings, check, from_node
from rlhf.data.gold_judge import gold_score_batch
from rlhf.errors import ConfigError
from rlhf.evaluation import metrics as M
from rlhf.evaluation import plots, tables
from rlhf.evaluation.batching import rows_of, shortest_first
from rlhf.evaluation.checkpoints import cost_fields, final_cost, policy_checkpoints
from rlhf.evaluation.policies import PolicyBank, PolicySpec, resolve_judge, resolve_policies
from rlhf.modeling.generation import Sampling, cut_prompts, response_logprobs, sample
from rlhf.modeling.logprobs import completion_logprobs, tokenize_completions, truncate_prompt
from rlhf.modeling.models import load_causal_lm, load_reward_run, place
from rlhf.modeling.reward_scoring import score_conversations
from rlhf.run import costs
from rlhf.run.job import build_job
from rlhf.run.rundir import FinishedRun, peak_rss_mb, reset_peaks, write_json_atomic

log = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
SAMPLES = "samples.jsonl"


@dataclass(frozen=True)
class Settings:
    """conf/evaluate.yaml ``evaluation:`` (every default and its reason lives there)."""

    n_prompts: int
    samples_per_prompt: int
    n_pairs: int
    sampling: Sampling
    greedy: bool
    chunk_size: int
    pair_max_length: int
    reward_max_length: int | None
    bootstrap_samples: int
    confidence: float
    hacking_margin: float
    checkpoints: bool
    ppo_checkpoints: bool  # deprecated alias of checkpoints (when it scored PPO's alone)
    sample_rows: int
    allow_proxy_judge: bool

    def __post_init__(self):
        check(self.n_prompts >= 1, "evaluation.n_prompts", self.n_prompts, "must be >= 1 held-out prompt (e.g. 64)")
        check(
            self.samples_per_prompt >= 1,
            "evaluation.samples_per_prompt",
            self.samples_per_prompt,
            "must be >= 1 response per prompt (1 = one draw; 4 = a prompt's score averages four)",
        )
        if self.greedy and self.samples_per_prompt > 1:
            raise ConfigError(
                f"evaluation.samples_per_prompt={self.samples_per_prompt} with evaluation.greedy=true draws the same "
                "response again: set evaluation.samples_per_prompt=1, or evaluation.greedy=false"
            )
        self.sampling.check("evaluation.sampling")
        check(
            self.n_pairs >= 0, "evaluation.n_pairs", self.n_pairs, "must be >= 0 held-out pairs (0 skips the accuracy)"
        )
        check(
            self.chunk_size >= 1,
            "evaluation.chunk_size",
            self.chunk_size,
            "must be >= 1 prompt per generate() call, e.g. 64 on CPU (lower it if generation runs out of memory)",
        )
        check(self.pair_max_length >= 16, "evaluation.pair_max_length", self.pair_max_length, "must be >= 16 tokens")
        if self.reward_max_length is not None:
            check(
                self.reward_max_length >= 16,
                "evaluation.reward_max_length",
                self.reward_max_length,
                "must be >= 16 tokens, or null for the judge run's algo.max_length",
            )
        check(
            self.bootstrap_samples >= 1,
            "evaluation.bootstrap_samples",
            self.bootstrap_samples,
            "must be >= 1 (e.g. 1000)",
        )
        check(0 < self.confidence < 1, "evaluation.confidence", self.confidence, "must be in (0, 1), e.g. 0.95")
        check(self.hacking_margin >= 0, "evaluation.hacking_margin", self.hacking_margin, "must be >= 0")
        check(self.sample_rows >= 0, "evaluation.sample_rows", self.sample_rows, "must be >= 0")

    @property
    def scores_checkpoints(self) -> bool:
        return self.checkpoints or self.ppo_checkpoints

    @property
    def logprob_temperature(self) -> float:
        """KL is measured on the distribution sampled from: logits / temperature (1 for greedy decoding)."""
        return self.sampling.logprob_temperature(self.greedy)


# --------------------------------------------------------------------------- 2. sample


@dataclass
class Generations:
    """One policy's answers to the prompts ([N * k] each: prompt i's k responses at i*k .. i*k + k - 1)."""

    texts: list[str]
    lengths: np.ndarray  # response tokens, EOS included
    has_eos: np.ndarray  # bool
    kl: np.ndarray  # sum over response tokens of log pi - log pi_ref


def each_k_times(items: list, k: int) -> list:
    """[N] -> [N * k]: every item k times in a row (the layout of Generations)."""
    return [item for item in items for _ in range(k)]


def per_prompt(values: np.ndarray, k: int) -> np.ndarray:
    """[N * k] per response -> [N]: each prompt's mean over its k responses."""
    return np.asarray(values, dtype=np.float64).reshape(-1, k).mean(1)


@torch.no_grad()
def generate(
    bank: PolicyBank,
    policy: str | None,
    reference: str | None,
    prompts: list[list[dict]],
    settings: Settings,
    seed: int,
) -> Generations:
    """Seeded answers of ``policy`` (adapter name, None = base) and their KL to ``reference``, in the order of
    ``prompts`` (rlhf/evaluation/batching.py): ``settings.chunk_size`` prompts per generate call, shortest first
    (every policy in the same order, so the same random stream); the policy's log-probs from the decoding's own
    logits (fp32 weights; with bf16 weights from a forward), the reference's from a forward over each chunk's
    prompts and responses."""
    order = shortest_first(bank.tokenizer, prompts)
    view = bank.view(policy, reference)
    with_kl = policy != reference
    # bf16 weights: cached decoding and a whole-sequence forward round differently, so the policy's side of the
    # KL is a forward like the reference's (as PPO's Roles.generation_matches_scoring decides for its ratio).
    from_decoding = with_kl and bank.decoding_matches_scoring
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)  # every policy draws with the same random stream
        with costs.phase("generation"):
            rollout = sample(view, [prompts[i] for i in order], settings.sampling, settings.greedy,
                             chunk_size=settings.chunk_size, with_logprobs=from_decoding)  # fmt: skip
    mask = rollout.mask.float()
    kl = torch.zeros(len(rollout))
    if with_kl:
        with costs.phase("kl_logprobs"):
            # The generation chunks again, shortest prompts first: sorting by prompt + response length instead
            # mixes long prompts into every batch (each pads to its longest prompt and longest response).
            for rows in torch.arange(len(rollout)).split(settings.chunk_size):
                batch = rows_of(rollout, rows)
                local = torch.arange(len(rows))
                ref_logprobs, _ = response_logprobs(view, "reference", batch, local, settings.logprob_temperature)
                logprobs = batch.logprobs
                if not from_decoding:
                    logprobs, _ = response_logprobs(view, "policy", batch, local, settings.logprob_temperature)
                kl[rows] = ((logprobs - ref_logprobs) * batch.mask).sum(1).float().cpu()
    back = np.argsort(order)  # sorted position of each prompt
    return Generations(
        [rollout.texts[i] for i in back],
        mask.sum(1).cpu().numpy()[back],
        rollout.has_eos.cpu().numpy()[back],
        kl.numpy()[back],
    )


# --------------------------------------------------------------------------- 4. pairs


@dataclass
class PairLogprobs:
    """Summed log-probs and token counts of the chosen and rejected responses of N pairs."""

    chosen: np.ndarray
    chosen_tokens: np.ndarray
    rejected: np.ndarray
    rejected_tokens: np.ndarray


@costs.phase("pair_logprobs")
def tokenize_pairs(tokenizer, examples: list[dict], max_prompt_length: int) -> tuple[list, list, list]:
    """(prompt ids, chosen ids, rejected ids) per pair, split as TRL's DPO does (rlhf/modeling/logprobs.py)."""
    prompts, chosen, rejected = [], [], []
    for ex in examples:
        p, (c, r) = tokenize_completions(
            tokenizer, truncate_prompt(tokenizer, ex["prompt"], max_prompt_length), [ex["chosen"], ex["rejected"]]
        )
        prompts.append(p)
        chosen.append(c)
        rejected.append(r)
    return prompts, chosen, rejected


@costs.phase("pair_logprobs")
def pair_logprobs(
    bank: PolicyBank, adapter: str | None, tokenized: tuple[list, list, list], batch_size: int, max_length: int
) -> PairLogprobs:
    prompts, chosen, rejected = tokenized
    pad, n = bank.tokenizer.pad_token_id, len(prompts)
    with bank.use(adapter) as model:  # chosen and rejected in one call: its length-sorted batches pad less
        logps, tokens = completion_logprobs(model, prompts * 2, chosen + rejected, pad, batch_size, max_length)
    logps, tokens = logps.numpy(), tokens.numpy()
    return PairLogprobs(logps[:n], tokens[:n], logps[n:], tokens[n:])


def accuracy_of(policy: PairLogprobs, reference: PairLogprobs | None) -> tuple[float, str, np.ndarray]:
    """(accuracy, kind, margins [N]): the implicit reward log pi - log pi_ref ranks chosen above rejected;
    without a distinct reference (the base policy), the length-normalised log-likelihood does."""
    if reference is None:
        margins = M.length_normalised_margins(
            policy.chosen, policy.chosen_tokens, policy.rejected, policy.rejected_tokens
        )
        return M.margin_accuracy(margins), "length-normalised log-likelihood", margins
    margins = M.implicit_reward_margins(policy.chosen, reference.chosen, policy.rejected, reference.rejected)
    return M.margin_accuracy(margins), "implicit reward", margins


# --------------------------------------------------------------------------- 5. metrics


@costs.phase("report")
def summarise(
    name: str,
    gens: Generations,
    rm: np.ndarray,
    gold: np.ndarray | None,
    families: list[str],
    settings: Settings,
    seed: int,
    base: dict | None,
    chosen_rm: np.ndarray,
    chosen_gold: np.ndarray | None,
) -> dict:
    """Every per-policy metric from its generations and scores: ``gens``, ``rm``, ``gold`` and ``base``'s arrays
    per response [N * k], ``families`` and the chosen responses' scores per prompt [N]. Every interval resamples
    the N prompts, each scored by the mean over its k responses; a win rate is each prompt's share of wins
    (response j against the chosen response, or against base's response j: both drew from one random stream)."""
    k = settings.samples_per_prompt
    boot = dict(n_samples=settings.bootstrap_samples, confidence=settings.confidence, seed=seed)

    def mean_interval(per_response: np.ndarray) -> dict:
        return M.bootstrap_interval(per_prompt(per_response, k), **boot).as_dict()

    def win_rate(per_response: np.ndarray, against: np.ndarray) -> dict:
        """``against`` per response [N * k], or per prompt [N] (the chosen response: every draw meets it)."""
        against = against if len(against) == len(per_response) else np.repeat(against, k)
        return mean_interval(M.pairwise_wins(per_response, against))

    out = {
        "avg_reward": mean_interval(rm),
        "kl": M.kl_summary(per_prompt(gens.kl, k), **boot),
        "length": float(np.mean(gens.lengths)),
        "eos_rate": float(np.mean(gens.has_eos)),
        "distinct_2": M.distinct_n(gens.texts, 2),
        "win_rate_vs_chosen_rm": win_rate(rm, chosen_rm),
    }
    if gold is not None:
        gold_per_prompt = per_prompt(gold, k)
        out["gold_score"] = mean_interval(gold)
        out["gold_by_family"] = {
            f: float(np.mean([g for g, fam in zip(gold_per_prompt, families) if fam == f]))
            for f in sorted(set(families))
        }
        out["win_rate_vs_chosen_gold"] = win_rate(gold, chosen_gold)
    if base is not None:
        out["win_rate_vs_base_rm"] = win_rate(rm, base["rm"])
        out["reward_delta_vs_base"] = M.paired_difference(
            per_prompt(rm, k), per_prompt(base["rm"], k), **boot
        ).as_dict()
        if gold is not None:
            out["win_rate_vs_base_gold"] = win_rate(gold, base["gold"])
            out["gold_delta_vs_base"] = M.paired_difference(
                gold_per_prompt, per_prompt(base["gold"], k), **boot
            ).as_dict()
        out["reward_hacking"] = M.reward_hacking(
            out["reward_delta_vs_base"], out.get("gold_delta_vs_base"), settings.hacking_margin
        )
    return out


def _sample_row(gens: Generations, rm: np.ndarray, gold: np.ndarray | None, i: int, k: int) -> dict:
    """samples.jsonl's entry for one policy on prompt i: its first response, and the scores, KL, length and EOS
    rate as means over the prompt's k responses (with k > 1 also every response and its scores)."""
    rows = slice(i * k, (i + 1) * k)
    row = {
        "response": gens.texts[i * k],
        "rm": float(rm[rows].mean()),
        "kl": float(gens.kl[rows].mean()),
        "length": float(gens.lengths[rows].mean()) if k > 1 else int(gens.lengths[i]),
        "eos": float(gens.has_eos[rows].mean()) if k > 1 else bool(gens.has_eos[i]),
        **({"gold": float(gold[rows].mean())} if gold is not None else {}),
    }
    if k > 1:
        row["responses"] = gens.texts[rows]
        row["rm_each"] = [float(x) for x in rm[rows]]
        if gold is not None:
            row["gold_each"] = [float(x) for x in gold[rows]]
    return row


def trajectory_point(
    policy: str,
    step: int | None,
    final: bool,
    gens: Generations,
    rm: np.ndarray,
    gold: np.ndarray | None,
    cost: dict | None,
    parameters: int,
    k: int,
    boot: dict,
) -> dict:
    """results.json's ``checkpoints`` entry for one saved step of a policy run (``final``: the policy itself):
    judge-RM and gold means with bootstrap intervals over prompts (per response [N * k] in), mean KL, and the
    training cost the run had spent to reach it (checkpoints.cost_fields; none where the checkpoint recorded none)."""
    point = {
        "policy": policy,
        "step": step,
        "final": final,
        "avg_reward": float(rm.mean()),
        "avg_reward_interval": M.bootstrap_interval(per_prompt(rm, k), **boot).as_dict(),
        "kl": float(gens.kl.mean()),
    }
    if gold is not None:
        point["gold_score"] = float(gold.mean())
        point["gold_score_interval"] = M.bootstrap_interval(per_prompt(gold, k), **boot).as_dict()
    return point | cost_fields(cost, parameters)


def _checkpoint_row(scores: dict[str, dict[str, dict]], i: int) -> dict:
    """samples.jsonl's ``checkpoints`` entry for prompt i: {policy: {step: {rm, kl, gold}}} (the tournament's
    cost frontier resamples prompts), or nothing without scored checkpoints."""
    if not scores:
        return {}
    return {"checkpoints": {name: {step: {key: float(values[i]) for key, values in point.items()}
                                   for step, point in steps.items()} for name, steps in scores.items()}}  # fmt: skip


def _final_step(spec: PolicySpec, earlier: list) -> int | None:
    """The policy's own step: PPO's iterations, a Trainer run's global step, else after its last checkpoint."""
    for key in ("iterations", "train_steps"):
        if isinstance(spec.summary.get(key), int):
            return spec.summary[key]
    return earlier[-1].step + 1 if earlier else None


# --------------------------------------------------------------------------- the run


def _timed(times: dict, key: str, start: float) -> float:
    now = time.perf_counter()
    times[key] = round(times.get(key, 0.0) + now - start, 2)
    return now


def compared_artifacts(specs: list[PolicySpec], judge_run: FinishedRun) -> dict:
    """The W&B model artifacts of the compared runs, by policy name, and the judge's (train.py records each in its
    summary.json; a run trained without W&B has none)."""
    policies = {s.name: s.summary["wandb_artifact"] for s in specs if s.summary.get("wandb_artifact")}
    return {"policies": policies, "judge": judge_run.summary.get("wandb_artifact")}


def evaluate(cfg: DictConfig, run_dir: Path, explicit: set[str] = frozenset()) -> dict:
    """Compare the policies of ``cfg.policies`` into ``run_dir``; returns results.json's content.

    ``explicit``: names of policies given on the command line (a missing one is an error, never skipped).
    """
    started = time.perf_counter()
    costs.reset()  # phase seconds of this evaluation, into results.json (rlhf/run/costs.py)
    reset_peaks()  # this evaluation's peak memory (evaluate.py -m runs several in one process)
    times: dict[str, float] = {}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = from_node(Settings, cfg.evaluation, "evaluation")
    model = from_node(ModelSettings, cfg.model, "model")
    outputs_root = Path(cfg.outputs_root)
    policies = OmegaConf.to_container(cfg.policies, resolve=True) if cfg.policies is not None else {}

    # 1. resolve (before anything loads, so a wrong path fails in a second)
    specs = resolve_policies(policies, model, outputs_root, set(explicit))
    judge_choice = resolve_judge(cfg.judge, model, outputs_root, specs, cfg.dataset.name, settings.allow_proxy_judge)
    judge_run = judge_choice.run
    with costs.phase("setup"):
        job = build_job(cfg, run_dir, job_type="evaluate", group="evaluate", tags=[str(t) for t in cfg.tags])
    hardware, dataset, data, tracker, tokenizer = job.hardware, job.dataset, job.data, job.tracker, job.tokenizer
    try:
        artifacts = compared_artifacts(specs, judge_run)
        names = [*artifacts["policies"].values(), artifacts["judge"]]
        tracker.use_models(artifacts, [name for name in names if name])
        examples = data.test[: settings.n_prompts]
        if not examples:
            raise ConfigError(
                f"the prompt set is empty: dataset={dataset.name} has no test rows; "
                "raise dataset.n_test or dataset.max_eval_rows"
            )
        if len(examples) < settings.n_prompts:
            log.warning(
                "evaluation.n_prompts=%d but the test split has %d rows: using %d",
                settings.n_prompts,
                len(data.test),
                len(examples),
            )
        pairs = data.test[: settings.n_pairs]
        # Cut by whole turns once, as PPO and DPO do: the policies answer, and the judge scores, the same prompts.
        prompts = cut_prompts(
            tokenizer,
            [ex["prompt"] for ex in examples],
            settings.sampling.max_prompt_length,
            "evaluation.sampling.max_prompt_length",
        )
        families = [ex["family"] for ex in examples]
        with_gold = dataset.name == "hh_synthetic"
        micro = hardware.micro_batch_size
        clock = time.perf_counter()
        with costs.phase("load_model"):
            path = job.model_path
            bank = PolicyBank(place(load_causal_lm(path, model, hardware, tokenizer), hardware), tokenizer)
            names = {s.name: (bank.attach(s.adapter), bank.attach(s.reference)) for s in specs}
            checkpoints = {
                s.name: policy_checkpoints(s.run_dir, s.summary) if settings.scores_checkpoints else [] for s in specs
            }
            judge_tokenizer, judge = load_reward_run(judge_run, hardware)
            judge = place(judge, hardware)
        reward_max_length = settings.reward_max_length or int(judge_run.config.algo.max_length)
        clock = _timed(times, "load", clock)

        @costs.phase("judge_scoring")
        def judge_scores(conversations: list[list[dict]]) -> np.ndarray:
            return (
                score_conversations(judge, judge_tokenizer, conversations, settings.chunk_size, reward_max_length)
                .numpy()
                .astype(np.float64)
            )

        # 2. sample every policy: k responses per prompt (evaluation.samples_per_prompt), [N * k] in prompt order
        k = settings.samples_per_prompt
        answered = each_k_times(prompts, k)
        gens = {}
        for spec in specs:
            policy, reference = names[spec.name]
            gens[spec.name] = generate(bank, policy, reference, answered, settings, cfg.seed)
        clock = _timed(times, "sample+kl", clock)

        # 3. judge the dataset's chosen responses (the yardstick of "win rate vs chosen") and every policy's in one
        # call: its length-sorted batches then pad less than per policy
        conversations = [p + r for p, r in zip(prompts, (ex["chosen"] for ex in examples))]
        for name in gens:
            conversations += [p + [{"role": "assistant", "content": t}] for p, t in zip(answered, gens[name].texts)]
        chosen_rm, *policy_rm = np.split(
            judge_scores(conversations), np.cumsum([len(prompts)] + [len(answered)] * (len(gens) - 1))
        )
        rm_scores = dict(zip(gens, policy_rm))  # per response [N * k]
        with costs.phase("gold_scoring"):
            chosen_gold = (
                np.asarray(gold_score_batch(prompts, [ex["chosen"] for ex in examples])) if with_gold else None
            )
            gold_scores = {
                name: np.asarray(gold_score_batch(answered, [[{"role": "assistant", "content": t}] for t in g.texts]))
                if with_gold
                else None
                for name, g in gens.items()
            }
        clock = _timed(times, "judge", clock)
        for name, g in gens.items():
            log.info(
                "%s: reward %.3f, gold %s, KL %.3f, length %.1f",
                name,
                rm_scores[name].mean(),
                "n/a" if not with_gold else f"{gold_scores[name].mean():.3f}",
                g.kl.mean(),
                g.lengths.mean(),
            )

        # 2b. every kept checkpoint of every policy run, on the same prompts, judge and gold (evaluation.checkpoints)
        checkpoint_points = []
        per_prompt_checkpoints: dict[str, dict[str, dict]] = {}  # policy -> step -> score -> [N], for samples.jsonl
        if settings.scores_checkpoints:
            boot = dict(n_samples=settings.bootstrap_samples, confidence=settings.confidence, seed=cfg.seed)
            parameters = sum(p.numel() for n, p in bank.model.named_parameters() if "lora_" not in n)
            for spec in specs:
                if spec.is_base:
                    continue
                _, reference = names[spec.name]
                for ckpt in checkpoints[spec.name]:
                    g = generate(bank, bank.attach(ckpt.adapter), reference, answered, settings, cfg.seed)
                    conversations = [p + [{"role": "assistant", "content": t}] for p, t in zip(answered, g.texts)]
                    rm = judge_scores(conversations)
                    with costs.phase("gold_scoring"):
                        gold = np.asarray(gold_score_batch(answered, g.texts)) if with_gold else None
                    checkpoint_points.append(
                        trajectory_point(spec.name, ckpt.step, False, g, rm, gold, ckpt.cost, parameters, k, boot)
                    )
                    per_prompt_checkpoints.setdefault(spec.name, {})[str(ckpt.step)] = {
                        "rm": per_prompt(rm, k), "kl": per_prompt(g.kl, k),
                        **({"gold": per_prompt(gold, k)} if with_gold else {}),
                    }  # fmt: skip
                final = trajectory_point(spec.name, _final_step(spec, checkpoints[spec.name]), True, gens[spec.name],
                                         rm_scores[spec.name], gold_scores[spec.name],
                                         final_cost(spec.run_dir, spec.summary), parameters, k, boot)  # fmt: skip
                checkpoint_points.append(final)
                log.info("%s: %d checkpoints scored besides the policy", spec.name, len(checkpoints[spec.name]))
        clock = _timed(times, "checkpoints", clock)

        # 4. preference accuracy on held-out pairs
        accuracy = {}
        if pairs:
            tokenized = tokenize_pairs(tokenizer, pairs, settings.sampling.max_prompt_length)
            cache: dict[str | None, PairLogprobs] = {}

            def logps(adapter: str | None) -> PairLogprobs:
                if adapter not in cache:
                    cache[adapter] = pair_logprobs(bank, adapter, tokenized, micro, settings.pair_max_length)
                return cache[adapter]

            for spec in specs:
                policy, reference = names[spec.name]
                own = logps(policy)
                acc, kind, _ = accuracy_of(own, None if policy == reference else logps(reference))
                ll_acc, _, _ = accuracy_of(own, None)
                accuracy[spec.name] = {"accuracy": acc, "accuracy_kind": kind, "ll_accuracy": ll_acc}
        clock = _timed(times, "pairs", clock)

        # 5. metrics and report
        base_name = next((s.name for s in specs if s.is_base), None)
        base = None if base_name is None else {"rm": rm_scores[base_name], "gold": gold_scores[base_name]}
        results_policies = {}
        for spec in specs:
            metrics = summarise(
                spec.name,
                gens[spec.name],
                rm_scores[spec.name],
                gold_scores[spec.name],
                families,
                settings,
                cfg.seed,
                None if spec.name == base_name else base,
                chosen_rm,
                chosen_gold,
            )
            metrics.update(accuracy.get(spec.name, {"accuracy": None, "accuracy_kind": None, "ll_accuracy": None}))
            results_policies[spec.name] = {**spec.describe(), **metrics}
        boot = dict(n_samples=settings.bootstrap_samples, confidence=settings.confidence, seed=cfg.seed)
        scores = {  # per prompt: the paired comparisons resample prompts
            name: {
                "rm": per_prompt(rm_scores[name], k),
                **({"gold": per_prompt(gold_scores[name], k)} if with_gold else {}),
            }
            for name in gens
        }
        results = {
            "policies": results_policies,
            "base": base_name,
            # every pair of policies on every score: paired difference, interval and verdict (metrics.py)
            "comparisons": M.paired_comparisons(scores, M.comparison_pairs(list(gens), base_name), **boot),
            "chosen": {
                "avg_reward": M.bootstrap_interval(chosen_rm, **boot).as_dict(),
                **({"gold_score": M.bootstrap_interval(chosen_gold, **boot).as_dict()} if with_gold else {}),
            },
            "checkpoints": checkpoint_points,
            "judge": {
                "run_dir": str(judge_run.run_dir),
                "reward_max_length": reward_max_length,
                "independent": judge_choice.independent,
            },
            # the compared policies trained against the judge (the table marks them)
            "judge_is_proxy_of": judge_choice.proxy_of,
            "model": model.name,
            "dataset": {
                "name": dataset.name,
                "source": data.source,
                "seed": dataset.seed,
                "prompts": len(examples),
                "pairs": len(pairs),
            },
            "settings": asdict(settings),
            "seed": cfg.seed,
            "gold": with_gold,
            "wandb_artifacts": artifacts,
        }
        samples = [  # one row per prompt, every policy's scores in it: a later aggregate can resample prompts
            {
                "index": i,  # in the test split
                "prompt": p[-1]["content"],
                "family": f,
                "chosen": ex["chosen"][-1]["content"],
                "chosen_rm": float(chosen_rm[i]),
                **({"chosen_gold": float(chosen_gold[i])} if with_gold else {}),
                **{name: _sample_row(gens[name], rm_scores[name], gold_scores[name], i, k) for name in gens},
                **_checkpoint_row(per_prompt_checkpoints, i),
            }
            for i, (p, f, ex) in enumerate(zip(prompts, families, examples))
        ]
        with costs.phase("report"):
            tables.write_jsonl(run_dir / SAMPLES, samples)
            results["plots"] = plots.write_all(
                run_dir, results, {s.name: s.run_dir for s in specs if s.run_dir is not None}
            )
        clock = _timed(times, "report", clock)
        results["time_s"] = times
        results["wall_time_s"] = round(time.perf_counter() - started, 2)
        results["peak_rss_mb"] = round(peak_rss_mb(), 1)
        results["phase_seconds"] = costs.current().totals(results["wall_time_s"])["phase_seconds"]  # no tokens
        write_json_atomic(run_dir / RESULTS_JSON, results)
        (run_dir / RESULTS_MD).write_text(tables.results_markdown(results), encoding="utf-8")
        tables.log_to_wandb(tracker, results, samples, settings.sample_rows, run_dir)
        tracker.finish(0)
    except BaseException:
        tracker.finish(1)
        raise
    return results
