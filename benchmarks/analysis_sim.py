"""Simulated experiments for spec.analysis: is "analyse every interval" honest, and what does it cost?

    .venv/bin/python -m benchmarks.analysis_sim      (part of `make bench`; BENCH_ANALYSIS_RUNS to change)

1. A/A: RUNS experiments where both arms have the same thumbs-up rate, looked at LOOKS times each
   through the operator's own decision code (reconcile.analysis.decide). The false-promotion rate
   must stay at or below alpha; beside it, a naive fixed-horizon z-test repeated at every look.
2. A/B: the candidate is truly better by the minimumEffect the test is tuned for. Power and the
   median samples per arm until the decision, beside a fixed-horizon test of the same alpha and
   power at its planned sample size (one look).

Results go to bench-results/analysis_sim.{json,md} and two PNG plots.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from promptalias.api.experiment import AnalysisDecision, ExperimentAnalysis
from promptalias.reconcile.analysis import ArmData, Context, MetricData, decide
from promptalias.reconcile.stats import (
    EffectScale,
    Summary,
    effect,
    fixed_horizon_samples,
    fixed_horizon_z,
    z_quantile,
)

OUT = Path(os.environ.get("BENCH_RESULTS", "bench-results"))
RUNS = int(os.environ.get("BENCH_ANALYSIS_RUNS", "10000"))
POWER_RUNS = int(os.environ.get("BENCH_ANALYSIS_POWER_RUNS", "2000"))
ALPHA, POWER, EFFECT, RATE = 0.05, 0.8, 0.10, 0.10
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def analysis() -> ExperimentAnalysis:
    return ExperimentAnalysis.model_validate(
        {
            "minSamples": 100,
            "alpha": ALPHA,
            "power": POWER,
            "sampleRatioAlpha": 0,
            "metrics": [
                {
                    "name": "thumbs",
                    "role": "Success",
                    "direction": "Higher",
                    "minimumEffect": EFFECT,
                    "mlflowFeedback": {"experiment": "sim", "name": "thumbs", "aggregation": "Rate"},
                }
            ],
        }
    )


def arm(n: int, k: int) -> ArmData:
    return ArmData(n=n, summary=Summary.rate(n, float(k)), exposures=n)


def simulate(
    runs: int, looks: int, per_look: int, candidate_rate: float, seed: int
) -> tuple[list[int | None], list[int | None], list[int | None]]:
    """Per run: the look (1-based) at which the sequential analysis promoted, the naive repeated
    z-test promoted, and the sequential analysis decided anything (promote or abort); None: never."""
    rng = np.random.default_rng(seed)
    spec = analysis()
    z = z_quantile(1 - ALPHA / 2)
    base = rng.binomial(per_look, RATE, size=(runs, looks)).cumsum(axis=1)
    cand = rng.binomial(per_look, candidate_rate, size=(runs, looks)).cumsum(axis=1)
    promoted: list[int | None] = []
    naive: list[int | None] = []
    decided: list[int | None] = []
    for run in range(runs):
        seq_at = naive_at = decided_at = None
        for look in range(looks):
            n = per_look * (look + 1)
            b, c = int(base[run, look]), int(cand[run, look])
            if naive_at is None:
                e = effect(Summary.rate(n, b), Summary.rate(n, c), EffectScale.RELATIVE)
                if e is not None and fixed_horizon_z(e) > z:
                    naive_at = look + 1
            if decided_at is None:
                ctx = Context(now=T0 + timedelta(minutes=look), started=T0, window_start=T0, weight=50)
                result = decide(spec, {"thumbs": MetricData(arm(n, b), arm(n, c))}, ctx)
                if result.decision in (AnalysisDecision.PROMOTE, AnalysisDecision.ABORT):
                    decided_at = look + 1
                    if result.decision == AnalysisDecision.PROMOTE:
                        seq_at = look + 1
            if decided_at is not None and naive_at is not None:
                break
        promoted.append(seq_at)
        naive.append(naive_at)
        decided.append(decided_at)
    return promoted, naive, decided


def cumulative(hits: list[int | None], looks: int) -> list[float]:
    return [sum(1 for h in hits if h is not None and h <= look) / len(hits) for look in range(1, looks + 1)]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    planned = fixed_horizon_samples(RATE, RATE * (1 - RATE), alpha=ALPHA, power=POWER, relative_effect=EFFECT)
    looks, per_look = 24, max(100, planned // 12)  # looks up to twice the fixed-horizon sample size
    aa_seq, aa_naive, _ = simulate(RUNS, looks, per_look, RATE, seed=1)
    ab_seq, _, ab_decided = simulate(POWER_RUNS, looks, per_look, RATE * (1 + EFFECT), seed=2)
    rng = np.random.default_rng(3)
    fixed_b = rng.binomial(planned, RATE, size=POWER_RUNS)
    fixed_c = rng.binomial(planned, RATE * (1 + EFFECT), size=POWER_RUNS)
    fixed_power = 0
    for b, c in zip(fixed_b, fixed_c, strict=True):
        e = effect(Summary.rate(planned, float(b)), Summary.rate(planned, float(c)), EffectScale.RELATIVE)
        fixed_power += e is not None and fixed_horizon_z(e) > z_quantile(1 - ALPHA / 2)
    wins = [look * per_look for look in ab_seq if look is not None]
    result: dict[str, Any] = {
        "alpha": ALPHA,
        "power_setting": POWER,
        "baseline_rate": RATE,
        "minimum_effect": EFFECT,
        "looks": looks,
        "samples_per_arm_per_look": per_look,
        "aa_runs": RUNS,
        "aa_false_promotion_sequential": sum(h is not None for h in aa_seq) / RUNS,
        "aa_false_promotion_naive_repeated": sum(h is not None for h in aa_naive) / RUNS,
        "ab_runs": POWER_RUNS,
        "fixed_horizon_samples_per_arm": planned,
        "fixed_horizon_power": fixed_power / POWER_RUNS,
        "sequential_power_within_looks": len(wins) / POWER_RUNS,
        "sequential_power_by_fixed_horizon": sum(1 for w in wins if w <= planned) / POWER_RUNS,
        "sequential_median_samples_to_promotion": statistics.median(wins) if wins else None,
        "sequential_mean_samples_to_promotion": statistics.fmean(wins) if wins else None,
        "ab_wrong_aborts": sum(
            1 for d, p in zip(ab_decided, ab_seq, strict=True) if d is not None and p is None
        )
        / POWER_RUNS,
        "seconds": round(time.monotonic() - started, 1),
    }
    (OUT / "analysis_sim.json").write_text(json.dumps(result, indent=2) + "\n")
    _report(result)
    _plots(result, aa_seq, aa_naive, wins, looks, per_look, planned)
    print(json.dumps(result, indent=2))
    ok = result["aa_false_promotion_sequential"] <= ALPHA
    return 0 if ok else 1


def _report(r: dict[str, Any]) -> None:
    median = r["sequential_median_samples_to_promotion"]
    lines = [
        "# Experiment analysis: simulated experiments",
        "",
        f"Thumbs-up rate {r['baseline_rate']:.0%} in the baseline; alpha {r['alpha']}, "
        f"power {r['power_setting']}, minimumEffect {r['minimum_effect']:.0%}; {r['looks']} looks of "
        f"{r['samples_per_arm_per_look']} samples per arm, each analysed by `reconcile.analysis.decide`.",
        "",
        "| | sequential (ours) | naive z-test at every look | fixed horizon (one look) |",
        "|---|---|---|---|",
        f"| A/A false promotions ({r['aa_runs']} runs) | {r['aa_false_promotion_sequential']:.2%} "
        f"| {r['aa_false_promotion_naive_repeated']:.2%} | {r['alpha'] / 2:.2%} (by construction) |",
        f"| power at +{r['minimum_effect']:.0%} ({r['ab_runs']} runs) "
        f"| {r['sequential_power_within_looks']:.1%} "
        f"(within {r['looks']} looks); {r['sequential_power_by_fixed_horizon']:.1%} by the fixed horizon's n "
        f"| - | {r['fixed_horizon_power']:.1%} |",
        f"| samples per arm to promotion | median {median:,.0f}, mean "
        f"{r['sequential_mean_samples_to_promotion']:,.0f} | - "
        f"| {r['fixed_horizon_samples_per_arm']:,} always |"
        if median is not None
        else "| samples per arm to promotion | none | - | - |",
        "",
        "![A/A false promotions by look](analysis_aa.png) ![samples to decision](analysis_samples.png)",
        "",
    ]
    (OUT / "analysis_sim.md").write_text("\n".join(lines))


def _plots(
    r: dict[str, Any],
    aa_seq: list[int | None],
    aa_naive: list[int | None],
    wins: list[int],
    looks: int,
    per_look: int,
    planned: int,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [per_look * look for look in range(1, looks + 1)]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(x, cumulative(aa_seq, looks), label="sequential (mSPRT), ours")
    ax.plot(x, cumulative(aa_naive, looks), label="naive z-test at every look")
    ax.axhline(r["alpha"], color="grey", linestyle="--", label=f"alpha = {r['alpha']}")
    ax.set_xlabel("samples per arm")
    ax.set_ylabel("A/A experiments promoted so far")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "analysis_aa.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    if wins:
        ordered = sorted(wins)
        ax.step(
            ordered, [(i + 1) / r["ab_runs"] for i in range(len(ordered))], where="post", label="sequential"
        )
    ax.axvline(planned, color="grey", linestyle="--", label=f"fixed horizon n = {planned:,}")
    ax.axhline(r["fixed_horizon_power"], color="grey", linestyle=":", label="fixed-horizon power")
    ax.set_xlabel("samples per arm at promotion")
    ax.set_ylabel(f"share of +{r['minimum_effect']:.0%} experiments promoted")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "analysis_samples.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["main", "simulate"]
