"""Issue 39: the published tournament and online-lr verdicts re-read with the crossed interval and Holm.

    .venv/bin/python docs/results/2026-12-07-statistics-reread/reread.py

docs/results keeps per-seed means, not per-prompt scores (samples.jsonl), so the crossed interval's shared-prompt
term cannot be estimated. Two readings bracket it:
  low  - the seed term alone (se_prompt = 0): the t-interval over the seed means, the narrowest the crossed interval
         can be; a verdict that fails here fails under the full interval.
  high - (online-lr only, where each seed's paired prompt interval is stored) all of a seed's prompt variance taken
         as shared (se_prompt^2 = the mean of the per-seed squared standard errors): the widest it can be.
"""

import json
from pathlib import Path

import numpy as np

from rlhf.tournament.stats import central_probability, crossed_half_width, crossed_interval, holm

RESULTS = Path(__file__).resolve().parents[1]
Z = 1.959964


def seed_reading(means, se_prompt: float = 0.0) -> tuple[float, float, float, float]:
    """(mean, low, high, p) from per-seed means [S] and a shared-prompt standard error."""
    means = np.asarray(means, dtype=np.float64)
    se_seed = means.std(ddof=1) / np.sqrt(means.size)
    df = means.size - 1
    half = float(crossed_half_width(se_seed, se_prompt, df, 0.95))
    mean = float(means.mean())
    p = float(1 - central_probability(abs(mean), se_seed, se_prompt, df))
    assert se_prompt or abs(half - (crossed_interval([[m] for m in means]).high - mean)) < 1e-9  # t over seed means
    return mean, mean - half, mean + half, p


def verdict(low: float, high: float, a: str, b: str) -> str:
    return f"{a} better" if low > 0 else f"{b} better" if high < 0 else "no difference"


def tournament(name: str) -> None:
    report = json.loads((RESULTS / name / "report.json").read_text())
    rows = []
    for d in report["differences"]:
        a, b, score = d["a"], d["b"], d["score"]
        diffs = np.subtract(report["methods"][a]["per_seed"][score], report["methods"][b]["per_seed"][score])
        rows.append((d, seed_reading(diffs)))
    adjusted = holm([r[1][3] for r in rows])
    print(f"\n### {name}: {len(report['seeds'])} seeds, family of {len(rows)} (Holm)\n")
    header = ["comparison", "score", "published [95%]", "published verdict", "seed term only [95%]", "p", "p (Holm)"]
    print("| " + " | ".join([*header, "verdict (Holm)"]) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for (d, (mean, low, high, p)), p_holm in zip(rows, adjusted):
        a, b = d["a"].upper(), d["b"] if d["b"] == "base" else d["b"].upper()
        pub = d["difference"]
        held = verdict(low, high, a, b) if p_holm < 0.05 else "no difference"
        print(
            f"| {a} − {b} | {d['score']} | {pub['mean']:+.3f} [{pub['low']:+.3f}, {pub['high']:+.3f}] | {d['verdict']} "
            f"| {mean:+.3f} [{low:+.3f}, {high:+.3f}] | {p:.3f} | {p_holm:.3f} | {held} |"
        )


def online_lr() -> None:
    data = json.loads((RESULTS / "2026-12-03-online-lr" / "eval_seeds.json").read_text())["online_lr_vs_grpo"]
    print("\n### 2026-12-03-online-lr: gold - base per arm (each arm its own family of one)\n")
    print("| arm | seeds | published [95%] | seed term only [95%] | p | all prompt variance shared [95%] | p |")
    print("|---|---|---|---|---|---|---|")
    for arm, row in data["arms"].items():
        per_seed = np.array(row["per_seed"])  # [S, 3]: mean, low, high of each seed's paired prompt bootstrap
        se_within = (per_seed[:, 2] - per_seed[:, 1]) / (2 * Z)
        low_reading = seed_reading(per_seed[:, 0])
        high_reading = seed_reading(per_seed[:, 0], float(np.sqrt(np.mean(se_within**2))))
        pub = row["over_seeds"]
        print(
            f"| {arm} | {len(row['seeds'])} | {pub[0]:+.3f} [{pub[1]:+.3f}, {pub[2]:+.3f}] "
            f"| {low_reading[0]:+.3f} [{low_reading[1]:+.3f}, {low_reading[2]:+.3f}] | {low_reading[3]:.3f} "
            f"| {high_reading[0]:+.3f} [{high_reading[1]:+.3f}, {high_reading[2]:+.3f}] | {high_reading[3]:.3f} |"
        )


if __name__ == "__main__":
    for name in ("2026-12-02-tournament", "2026-12-03-tournament"):
        tournament(name)
    online_lr()
