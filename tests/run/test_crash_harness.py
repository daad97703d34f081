"""The crash-consistency harness of issue 23: SIGKILL rm, dpo and ppo runs on tiny_llama at random moments
(tests/kill_at.py: after a step is logged, inside a checkpoint write, at the rename that publishes it, inside
the final evaluation, while summary.json or the saved config is written...), resume each run until it finishes
(a resume may be killed again; a run killed before its first checkpoint is deleted and started afresh, as a
user would), and check it against an uninterrupted run of the same config: every resume succeeds,
metrics.jsonl has each step once and in order, the status is ``finished``, and the final adapter is the
uninterrupted run's: bit-identical on CPU for rm and dpo, and as measured for PPO too (PPO_TOLERANCE).

The uninterrupted run is train.py under ``tests/kill_at.py --count=`` (no kill; it counts the calls of each
kill point, which SEEDs draw from); the slow test also checks it against plain train.py, so the kill points
change nothing a run computes.

A chain of processes is named by its seed; each attempt runs ``tests/kill_at.py SEED`` with a SEED made from the
algorithm, the chain and the attempt (attempt_seed), so one kill is reproduced by rerunning the attempts before it:
a failure lists their commands.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO

ALGOS = ("rm", "dpo", "ppo")
SEED = "seed=7"
ARGS = {
    "rm": ["algo=rm", "debug=tiny", "algo.max_steps=6", "algo.save_every=2", "algo.keep_checkpoints=2"],
    "dpo": ["algo=dpo", "debug=tiny", "algo.max_steps=6", "algo.save_every=2", "algo.keep_checkpoints=2"],
    "ppo": ["algo=ppo", "debug=tiny", "algo.iterations=4", "algo.save_every=2"],
}
ARGS["rm"] += ["dataset.n_train=24", SEED]
ARGS["dpo"] += ["dataset.n_train=24", SEED]
ARGS["ppo"] += [SEED]
# The metrics.jsonl rows of a training step, and of a held-out evaluation, by the key only they have.
TRAIN_KEY = {"rm": "loss", "dpo": "loss", "ppo": "objective/kl"}
EVAL_KEY = {"rm": "eval_accuracy", "dpo": "eval_accuracy", "ppo": "eval/rm_score"}
# The final adapter of a killed-and-resumed run against the uninterrupted run's, per tensor: None = torch.equal.
# PPO measured bit-identical too (tiny_llama, CPU, fixed seed: 0.0 max abs difference after 32 kills in 11 runs of
# the slow test), so it is held to torch.equal as well.
PPO_TOLERANCE = None
TOLERANCE = {"rm": None, "dpo": None, "ppo": PPO_TOLERANCE}
# Training-row values that must equal the uninterrupted run's (within the same tolerance as the weights); the
# other values are compared too, and the keys that differ are counted in the figure (``metric_keys_differing``),
# timing aside.
VALUE_KEYS = {
    "rm": ("loss", "grad_norm", "learning_rate"),
    "dpo": ("loss", "grad_norm", "learning_rate"),
    "ppo": ("objective/scores", "objective/kl", "loss/policy", "loss/value", "lr"),
}
TIMING = ("time/", "perf/", "train_runtime", "train_samples_per_second", "train_steps_per_second")
MAX_ATTEMPTS = 20
NO_CHECKPOINT = ("has no checkpoint", "start it afresh", "start the run afresh", "is not a train.py run directory")


def attempt_seed(algo: str, chain: int, attempt: int) -> int:
    """kill_at's SEED for one attempt: a different series for each algorithm (the same SEED would pick the
    same place in each algorithm's list of kill points)."""
    return (ALGOS.index(algo) + 1) * 100_000 + chain * 100 + attempt


def run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def steps_with(run_dir: Path, key: str) -> list[int]:
    return [r["step"] for r in rows(run_dir) if key in r]


def adapter_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of adapter/ (adapter/value/ too, for PPO), by file and name."""
    adapter = run_dir / "adapter"
    return {
        f"{path.relative_to(adapter)}:{name}": tensor
        for path in sorted(adapter.rglob("*.safetensors"))
        for name, tensor in load_file(path).items()
    }


def status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "summary.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class Reference:
    """The uninterrupted run of one algorithm, and the calls of each kill point it makes."""

    algo: str
    run_dir: Path
    outputs_root: Path  # where the killed runs write too (PPO finds its reward model there)
    counts: Path


@dataclass
class Chain:
    """One killed run, resumed until it finished, and what the checks found."""

    algo: str
    seed: int
    run_dir: Path
    commands: list[str] = field(default_factory=list)  # every attempt's command line and outcome
    kill_points: list[str] = field(default_factory=list)
    kills: int = 0
    resumes: int = 0
    resumes_loaded: int = 0  # resumes that loaded their checkpoint (then finished, or were killed further on)
    resumes_killed_before_load: int = 0
    resumes_failed: int = 0  # a traceback, or an exit code other than 0, SIGKILL, or 2 for want of a checkpoint
    restarts: int = 0
    duplicates: int = 0  # training steps in metrics.jsonl more than once
    duplicate_evals: int = 0  # held-out evaluation rows more than the uninterrupted run's
    missing: int = 0
    out_of_order: int = 0
    mismatches: int = 0  # adapter tensors unequal (beyond the algorithm's tolerance)
    max_abs_diff: float = 0.0
    latest_not_switched: int = 0  # finished, but outputs/latest/<algo> does not point at it
    metric_keys_differing: set[str] = field(default_factory=set)
    leftovers: list[str] = field(default_factory=list)  # entries the uninterrupted run's directory does not have
    failures: list[str] = field(default_factory=list)
    failure_kinds: list[str] = field(default_factory=list)

    def fail(self, message: str, result: subprocess.CompletedProcess | None = None, kind: str | None = None) -> None:
        if result is not None and "Traceback" in result.stderr:  # kind: the exception's type
            errors = [line for line in result.stderr.splitlines() if re.match(r"^[\w.]+(Error|Exception)\b", line)]
            kind = f"{message}: {errors[-1].split(':')[0] if errors else '?'}"
        self.failure_kinds.append(kind or message)
        tail = f"\n--- stderr tail ---\n{result.stderr[-3000:]}" if result is not None else ""
        steps = "\n".join(self.commands)
        self.failures.append(f"{self.algo} chain {self.seed}: {message}\n--- attempts ---\n{steps}{tail}")


class Harness:
    """Uninterrupted references and killed chains under ``root``. With ``plain_check`` each reference is checked
    against plain ``python train.py``: the kill points change nothing the run computes."""

    def __init__(self, root: Path, plain_check: bool = False):
        self.root = root
        self.plain_check = plain_check
        self.references: dict[str, Reference] = {}

    def reference(self, algo: str) -> Reference:
        """The uninterrupted run: train.py under tests/kill_at.py --count=, which fires no kill and counts the calls
        of each kill point (what a SEED draws from)."""
        if algo in self.references:
            return self.references[algo]
        # The rm reference writes where PPO looks for outputs/latest/rm; rm's killed runs write elsewhere.
        outputs = self.root / "outputs"
        if algo == "ppo":
            self.reference("rm")
        run_dir, counts = self.root / f"reference-{algo}", self.root / f"counts-{algo}.json"
        command = ["tests/kill_at.py", f"--count={counts}", *ARGS[algo], f"outputs_root={outputs}"]
        result = run([*command, f"hydra.run.dir={run_dir}"])
        assert result.returncode == 0, result.stderr[-3000:]
        root = self.root / "rm-chains-outputs" if algo == "rm" else outputs
        if self.plain_check:
            plain_dir = self.root / f"plain-{algo}"
            result = run(["train.py", *ARGS[algo], f"outputs_root={root}", f"hydra.run.dir={plain_dir}"])
            assert result.returncode == 0, result.stderr[-3000:]
            expected, got = adapter_tensors(plain_dir), adapter_tensors(run_dir)
            assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected), (
                f"{algo}: train.py under tests/kill_at.py --count computed other weights than plain train.py"
            )
            shutil.rmtree(plain_dir)
        self.references[algo] = Reference(algo, run_dir, root, counts)
        return self.references[algo]

    def chain(self, algo: str, seed: int) -> Chain:
        """Start a run under kill_at, resume it after every SIGKILL until it finishes, then check it."""
        ref = self.reference(algo)
        run_dir = self.root / f"{algo}-chain-{seed}"
        chain = Chain(algo, seed, run_dir)
        env = {"KILL_AT_COUNTS": str(ref.counts)}
        fresh, published = True, False
        for attempt in range(MAX_ATTEMPTS):
            args = (
                [*ARGS[algo], f"outputs_root={ref.outputs_root}", f"hydra.run.dir={run_dir}"]
                if fresh
                else [f"resume={run_dir}"]
            )
            command = ["tests/kill_at.py", str(attempt_seed(algo, seed, attempt)), *args]
            clock = time.monotonic()
            try:
                result = run(command, env)
            except subprocess.TimeoutExpired as err:
                chain.fail(f"python {' '.join(command)} still running after {err.timeout:.0f} s")
                return chain
            aimed = next((line for line in result.stderr.splitlines() if line.startswith("kill_at: aiming")), "")
            chain.commands.append(
                f"python {' '.join(command)}  -> exit {result.returncode} in {time.monotonic() - clock:.0f} s; "
                f"{aimed[9:]}"
            )
            chain.resumes += not fresh
            if "Traceback" in result.stderr:
                chain.resumes_failed += not fresh
                chain.fail("a traceback", result)
                return chain
            killed = [line for line in result.stderr.splitlines() if line.startswith("kill_at: SIGKILL")]
            if result.returncode == -signal.SIGKILL and killed:
                chain.kills += 1
                chain.kill_points.append(killed[0].split(" at ", 1)[1].split(";")[0])
                published |= "checkpoints published: 0" not in killed[0]
                if not fresh:
                    loaded = "resume loaded: True" in killed[0]
                    chain.resumes_loaded += loaded
                    chain.resumes_killed_before_load += not loaded
                if status(run_dir) == "finished":  # killed after summary.json said so: nothing left to resume
                    break
                fresh = False
            elif result.returncode == 0:
                chain.resumes_loaded += not fresh
                break
            elif result.returncode == 2 and not fresh and any(m in result.stderr for m in NO_CHECKPOINT):
                if published:
                    chain.fail("the run published a checkpoint, yet its resume found none", result)
                    return chain
                chain.restarts += 1  # killed before its first checkpoint: start afresh, as a user would
                shutil.rmtree(run_dir)
                fresh, published = True, False
            else:
                chain.resumes_failed += not fresh
                chain.fail(f"exit {result.returncode}", result)
                return chain
        else:
            chain.fail(f"not finished after {MAX_ATTEMPTS} attempts")
            return chain
        self.check(chain, ref)
        return chain

    def check(self, chain: Chain, ref: Reference) -> None:
        algo, run_dir = chain.algo, chain.run_dir
        if status(run_dir) != "finished":
            chain.fail(f"summary.json status {status(run_dir)!r}, not 'finished'")
        expected = steps_with(ref.run_dir, TRAIN_KEY[algo])
        got = steps_with(run_dir, TRAIN_KEY[algo])
        chain.duplicates = len(got) - len(set(got))
        chain.missing = len(set(expected) - set(got))
        chain.out_of_order = sum(a >= b for a, b in zip(got, got[1:]))
        if got != expected:
            chain.fail(f"training steps in metrics.jsonl {got}, expected {expected}", kind="training steps")
        evals, expected_evals = steps_with(run_dir, EVAL_KEY[algo]), steps_with(ref.run_dir, EVAL_KEY[algo])
        chain.duplicate_evals = max(0, len(evals) - len(expected_evals))
        if evals != expected_evals:
            chain.fail(
                f"evaluation rows at steps {evals}, expected {expected_evals}",
                kind="evaluation rows in metrics.jsonl: " + ("duplicated" if chain.duplicate_evals else "missing"),
            )
        self.check_values(chain, ref)
        expected_weights, got_weights = adapter_tensors(ref.run_dir), adapter_tensors(run_dir)
        if expected_weights.keys() != got_weights.keys():
            chain.fail(f"adapter tensors {sorted(got_weights)} differ from {sorted(expected_weights)}")
            return
        tolerance = TOLERANCE[algo]
        for name, want in expected_weights.items():
            have = got_weights[name]
            chain.max_abs_diff = max(chain.max_abs_diff, (have.float() - want.float()).abs().max().item())
            same = torch.equal(have, want) if tolerance is None else torch.allclose(have, want, **tolerance)
            chain.mismatches += not same
        if chain.mismatches:
            chain.fail(f"{chain.mismatches} adapter tensors differ (max abs diff {chain.max_abs_diff:.3g})")
        if (
            algo in ("rm", "dpo")
            and (run_dir / "eval_rewards.jsonl").read_text() != (ref.run_dir / "eval_rewards.jsonl").read_text()
        ):
            chain.fail("eval_rewards.jsonl differs from the uninterrupted run's")
        if algo == "ppo":
            got_when, want_when = (
                Counter(json.loads(line)["when"] for line in (d / "eval_samples.jsonl").read_text().splitlines())
                for d in (run_dir, ref.run_dir)
            )
            if got_when != want_when:
                chain.fail(f"eval_samples.jsonl holds {dict(got_when)} rows, expected {dict(want_when)}")
        latest = ref.outputs_root / "latest" / algo
        chain.latest_not_switched = int(not latest.exists() or latest.resolve() != run_dir.resolve())
        chain.leftovers = sorted(entries(run_dir) - entries(ref.run_dir))
        if not chain.failures:
            shutil.rmtree(run_dir)

    def check_values(self, chain: Chain, ref: Reference) -> None:
        """The training rows' values against the uninterrupted run's: VALUE_KEYS within the weights' tolerance,
        the other keys (timing aside) counted where they differ."""
        key, tolerance = TRAIN_KEY[chain.algo], TOLERANCE[chain.algo]
        got = {r["step"]: r for r in rows(chain.run_dir) if key in r}
        for want in (r for r in rows(ref.run_dir) if key in r):
            have = got.get(want["step"], {})
            for name in sorted(set(want) | set(have)):
                if name.startswith(TIMING) or have.get(name) == want.get(name):
                    continue
                close = (
                    tolerance is not None
                    and isinstance(have.get(name), float)
                    and torch.isclose(torch.tensor(have[name]), torch.tensor(want[name]), **tolerance).item()
                )
                if name in VALUE_KEYS[chain.algo] and not close:
                    chain.fail(f"step {want['step']}: {name} {have.get(name)} != {want.get(name)} uninterrupted")
                elif not close:
                    chain.metric_keys_differing.add(name)


def entries(run_dir: Path) -> set[str]:
    """The run directory's entries and those of its checkpoints folder, random suffixes of temporary names masked."""
    names = [p.name for p in run_dir.iterdir()] + [f"checkpoints/{p.name}" for p in (run_dir / "checkpoints").iterdir()]
    return {re.sub(r"tmp-?\w*$", "tmp*", name) for name in names if name != ".lock"}


def figure(chains: list[Chain], seconds: float) -> dict:
    """The harness's one-line figure, as a dict (also what RLHF_HARNESS_REPORT receives)."""
    points = Counter(p.split(" call ")[0] for c in chains for p in c.kill_points)
    return {
        "chains": len(chains),
        "kills": sum(c.kills for c in chains),
        "kills_by_algo": {a: sum(c.kills for c in chains if c.algo == a) for a in ALGOS},
        "resumes": sum(c.resumes for c in chains),
        "resumes_succeeded": sum(c.resumes_loaded for c in chains),
        "resumes_killed_before_load": sum(c.resumes_killed_before_load for c in chains),
        "restarts_from_scratch": sum(c.restarts for c in chains),
        "resumes_failed": sum(c.resumes_failed for c in chains),
        "duplicate_steps": sum(c.duplicates for c in chains),
        "duplicate_eval_rows": sum(c.duplicate_evals for c in chains),
        "missing_steps": sum(c.missing for c in chains),
        "weight_mismatches": sum(c.mismatches for c in chains),
        "max_abs_weight_diff": {a: max([c.max_abs_diff for c in chains if c.algo == a], default=0.0) for a in ALGOS},
        "latest_not_switched": sum(c.latest_not_switched for c in chains),
        "metric_keys_differing": dict(Counter(k for c in chains for k in c.metric_keys_differing)),
        "leftovers": dict(Counter(name for c in chains for name in c.leftovers)),
        "failures": sum(bool(c.failures) for c in chains),
        "failure_kinds": dict(Counter(kind for c in chains for kind in c.failure_kinds)),
        "kill_points": dict(sorted(points.items())),
        "wall_time_s": round(seconds, 1),
    }


def run_harness(
    root: Path, first_seed: int, min_kills: int = 0, rounds: int = 1, plain_check: bool = False
) -> tuple[list[Chain], dict]:
    """Rounds of one chain per algorithm (chain seeds first_seed, first_seed + 1, ...): at least ``rounds``, and
    then more until the chains hold ``min_kills`` kills in all."""
    harness = Harness(root, plain_check)
    started = time.monotonic()
    chains: list[Chain] = []
    for seed in itertools.count(first_seed):
        if seed - first_seed >= rounds and sum(c.kills for c in chains) >= min_kills:
            break
        chains += [harness.chain(algo, seed) for algo in ALGOS]
        print(f"round {seed}: {sum(c.kills for c in chains)} kills, {time.monotonic() - started:.0f} s", flush=True)
    return chains, figure(chains, time.monotonic() - started)


def report(chains: list[Chain], numbers: dict) -> None:
    """Print every attempt (pytest -s) and the one-line figure, write it to $RLHF_HARNESS_REPORT, then fail on
    any chain that went wrong, each with its attempts (the commands that reproduce it) and stderr."""
    line = (
        f"crash harness: {numbers['kills']} SIGKILLs {numbers['kills_by_algo']} in {numbers['chains']} runs; "
        f"{numbers['resumes']} resumes: {numbers['resumes_succeeded']} loaded their checkpoint, "
        f"{numbers['resumes_killed_before_load']} killed again before, "
        f"{numbers['restarts_from_scratch']} refused for want of a checkpoint (restarted from scratch), "
        f"{numbers['resumes_failed']} failed; {numbers['duplicate_steps']} duplicate training steps, "
        f"{numbers['missing_steps']} missing, {numbers['duplicate_eval_rows']} duplicate evaluation rows, "
        f"{numbers['weight_mismatches']} weight mismatches; "
        f"{numbers['failures']} failed runs {numbers['failure_kinds']}; "
        f"{numbers['wall_time_s']:.0f} s"
    )
    for chain in chains:
        print(f"{chain.algo} chain {chain.seed}:", *chain.commands, sep="\n  ")
    print(json.dumps(numbers))
    print(line)
    if os.environ.get("RLHF_HARNESS_REPORT"):
        Path(os.environ["RLHF_HARNESS_REPORT"]).write_text(json.dumps({"line": line, **numbers}, indent=1) + "\n")
    failures = [f for c in chains for f in c.failures]
    assert not failures, "\n\n".join(failures)


def test_quick_kills_resume_to_the_same_result(tmp_path):
    """One killed run per algorithm (a few kills): the default suite's taste of the harness."""
    chains, numbers = run_harness(tmp_path, first_seed=1)
    report(chains, numbers)
    assert all(c.kills >= 1 for c in chains)  # a fresh run is always killed: its point is drawn within its calls


@pytest.mark.slow
def test_many_kills_resume_to_the_same_result(tmp_path):
    """At least 100 SIGKILLs across rm, dpo and ppo (the figure in README.md's "What survives what")."""
    chains, numbers = run_harness(tmp_path, first_seed=100, min_kills=100, plain_check=True)
    report(chains, numbers)
    assert numbers["kills"] >= 100
