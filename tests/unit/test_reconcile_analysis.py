"""Pure decisions of the automatic analysis: every rule of reconcile/analysis.py, on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promptalias.api.experiment import (
    AnalysisDecision,
    AnalysisStatus,
    ExperimentAnalysis,
    ExperimentHistoryEntry,
    MetricVerdict,
)
from promptalias.reconcile.analysis import (
    ANALYSIS_ACTOR,
    ArmData,
    Context,
    MetricData,
    Observation,
    SourceFailure,
    decide,
    due_in,
    experiment_started,
    history_entry,
    split_start,
    window_text,
)
from promptalias.reconcile.stats import Summary

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

PROM = {"count": "sum(x{version='{{version}}'})", "value": "sum(y{version='{{version}}'})"}
SUCCESS = {
    "name": "thumbs-up",
    "role": "Success",
    "direction": "Higher",
    "mlflowFeedback": {"experiment": "app", "name": "thumbs"},
}
GUARD = {
    "name": "error-rate",
    "role": "Guard",
    "direction": "Lower",
    "threshold": 0.02,
    "thresholdType": "Absolute",
    "prometheus": PROM,
}
LATENCY = {
    "name": "p95",
    "role": "Guard",
    "direction": "Lower",
    "threshold": 0.2,
    "prometheus": {**PROM, "statistic": "Value"},
}


def analysis(*metrics: dict[str, Any], **extra: Any) -> ExperimentAnalysis:
    return ExperimentAnalysis.model_validate(
        {"minSamples": 100, "metrics": list(metrics) or [SUCCESS, GUARD], **extra}
    )


def rate(n: int, k: int, exposures: int | None = None) -> ArmData:
    return ArmData(n=n, summary=Summary.rate(n, k), exposures=exposures if exposures is not None else n)


def arms(b: ArmData, c: ArmData) -> MetricData:
    return MetricData(baseline=b, candidate=c)


def ctx(minutes: float = 10, weight: int = 50, splits: int = 1) -> Context:
    return Context(
        now=T0 + timedelta(minutes=minutes),
        started=T0,
        window_start=T0,
        weight=weight,
        splits=splits,
        baseline_version=3,
        candidate_version=4,
    )


EVEN_OK = arms(rate(4000, 40), rate(4000, 42))  # error rates 1.0% vs 1.05%
FEEDBACK_SAME = arms(rate(3000, 1800, 4000), rate(3000, 1795, 4000))
FEEDBACK_BETTER = arms(rate(3000, 1500, 4000), rate(3000, 1800, 4000))  # 50% -> 60% thumbs up
FEEDBACK_WORSE = arms(rate(3000, 1800, 4000), rate(3000, 1500, 4000))
ERRORS_BAD = arms(rate(2000, 20), rate(2000, 300))  # 1% -> 15%
ERRORS_LEANING = arms(rate(200, 2), rate(200, 9))  # +3.5 points, not significant yet
FEW = arms(rate(50, 25, 60), rate(40, 24, 60))
DOWN = SourceFailure("Prometheus at http://127.0.0.1:1 did not answer: connection refused", permanent=False)
BAD_QUERY = SourceFailure("Prometheus refused the query: bad_data: parse error", permanent=True)

# (name, analysis, observations, context, decision, reason fragment, stalled, unavailable)
CASES: list[
    tuple[str, ExperimentAnalysis, dict[str, Observation], Context, AnalysisDecision, str, bool, bool]
] = [
    (
        "below minSamples is pending, never failed",
        analysis(),
        {"thumbs-up": FEW, "error-rate": FEW},
        ctx(),
        AnalysisDecision.PENDING,
        "waiting for 100 samples per arm",
        False,
        False,
    ),
    (
        "no traces yet is pending, with the note",
        analysis(),
        {
            "thumbs-up": MetricData(rate(0, 0), rate(0, 0), note="MLflow has no experiment 'app' (yet)"),
            "error-rate": EVEN_OK,
        },
        ctx(),
        AnalysisDecision.PENDING,
        "(MLflow has no experiment 'app' (yet))",
        False,
        False,
    ),
    (
        "guard breached aborts at once",
        analysis(),
        {"thumbs-up": FEW, "error-rate": ERRORS_BAD},
        ctx(),
        AnalysisDecision.ABORT,
        "guard breached: error-rate",
        False,
        False,
    ),
    (
        "guard breached aborts even when another source is down",
        analysis(),
        {"thumbs-up": DOWN, "error-rate": ERRORS_BAD},
        ctx(),
        AnalysisDecision.ABORT,
        "worse than the threshold +0.02",
        False,
        False,
    ),
    (
        "dead source holds (never promotes)",
        analysis(),
        {"thumbs-up": FEEDBACK_BETTER, "error-rate": DOWN},
        ctx(),
        AnalysisDecision.HOLD,
        "connection refused",
        False,
        True,
    ),
    (
        "broken query holds and stalls",
        analysis(),
        {"thumbs-up": FEEDBACK_BETTER, "error-rate": BAD_QUERY},
        ctx(),
        AnalysisDecision.HOLD,
        "bad_data",
        True,
        False,
    ),
    (
        "missing observation holds",
        analysis(),
        {"thumbs-up": FEEDBACK_BETTER},
        ctx(),
        AnalysisDecision.HOLD,
        "no data was read",
        False,
        True,
    ),
    (
        "success significantly better promotes",
        analysis(),
        {"thumbs-up": FEEDBACK_BETTER, "error-rate": EVEN_OK},
        ctx(),
        AnalysisDecision.PROMOTE,
        "significantly better",
        False,
        False,
    ),
    (
        "better but a guard leans the wrong way continues",
        analysis(),
        {"thumbs-up": FEEDBACK_BETTER, "error-rate": ERRORS_LEANING},
        ctx(),
        AnalysisDecision.CONTINUE,
        "a guard leans the wrong way",
        False,
        False,
    ),
    (
        "success significantly worse aborts",
        analysis(),
        {"thumbs-up": FEEDBACK_WORSE, "error-rate": EVEN_OK},
        ctx(),
        AnalysisDecision.ABORT,
        "significantly worse",
        False,
        False,
    ),
    (
        "A/A continues",
        analysis(),
        {"thumbs-up": FEEDBACK_SAME, "error-rate": EVEN_OK},
        ctx(),
        AnalysisDecision.CONTINUE,
        "not significant yet",
        False,
        False,
    ),
    (
        "A/A at maxDuration holds by default",
        analysis(maxDuration="1h"),
        {"thumbs-up": FEEDBACK_SAME, "error-rate": EVEN_OK},
        ctx(minutes=61),
        AnalysisDecision.HOLD,
        "maxDuration 1h reached without a decision (onInconclusive Hold)",
        False,
        False,
    ),
    (
        "A/A at maxDuration aborts with onInconclusive Abort",
        analysis(maxDuration="1h", onInconclusive="Abort"),
        {"thumbs-up": FEEDBACK_SAME, "error-rate": EVEN_OK},
        ctx(minutes=60),
        AnalysisDecision.ABORT,
        "onInconclusive Abort",
        False,
        False,
    ),
    (
        "A/A at maxDuration promotes with onInconclusive Promote",
        analysis(maxDuration="1h", onInconclusive="Promote"),
        {"thumbs-up": FEEDBACK_SAME, "error-rate": EVEN_OK},
        ctx(minutes=60),
        AnalysisDecision.PROMOTE,
        "onInconclusive Promote",
        False,
        False,
    ),
    (
        "onInconclusive Promote holds when a guard leans the wrong way",
        analysis(maxDuration="1h", onInconclusive="Promote"),
        {"thumbs-up": FEEDBACK_SAME, "error-rate": ERRORS_LEANING},
        ctx(minutes=60),
        AnalysisDecision.HOLD,
        "a guard leans the wrong way",
        False,
        False,
    ),
    (
        "onInconclusive Promote never promotes below minSamples",
        analysis(maxDuration="1h", onInconclusive="Promote"),
        {"thumbs-up": FEW, "error-rate": FEW},
        ctx(minutes=60),
        AnalysisDecision.HOLD,
        "too few samples",
        False,
        False,
    ),
    (
        "onInconclusive Abort applies below minSamples",
        analysis(maxDuration="1h", onInconclusive="Abort"),
        {"thumbs-up": FEW, "error-rate": FEW},
        ctx(minutes=60),
        AnalysisDecision.ABORT,
        "maxDuration 1h reached",
        False,
        False,
    ),
    (
        "before maxDuration nothing inconclusive happens",
        analysis(maxDuration="1h", onInconclusive="Abort"),
        {"thumbs-up": FEEDBACK_SAME, "error-rate": EVEN_OK},
        ctx(minutes=59),
        AnalysisDecision.CONTINUE,
        "not significant yet",
        False,
        False,
    ),
    (
        "sample-ratio mismatch holds before trusting a breach",
        analysis(),
        {"thumbs-up": FEEDBACK_BETTER, "error-rate": arms(rate(5000, 50), rate(3000, 500))},
        ctx(weight=50),
        AnalysisDecision.HOLD,
        "sample-ratio mismatch on error-rate",
        False,
        False,
    ),
    (
        "sample ratio matching a 10% split is fine",
        analysis(),
        {
            "thumbs-up": arms(rate(3000, 1500, 9000), rate(1000, 600, 1000)),
            "error-rate": arms(rate(9000, 90), rate(1000, 10)),
        },
        ctx(weight=10),
        AnalysisDecision.PROMOTE,
        "significantly better",
        False,
        False,
    ),
    (
        "sample-ratio check off",
        analysis(sampleRatioAlpha=0),
        {"thumbs-up": FEEDBACK_SAME, "error-rate": arms(rate(5000, 50), rate(3000, 30))},
        ctx(weight=50),
        AnalysisDecision.CONTINUE,
        "not significant yet",
        False,
        False,
    ),
    (
        "value guard breached (p95 30% slower)",
        analysis(LATENCY),
        {"p95": arms(ArmData(n=500, value=1.0), ArmData(n=500, value=1.3))},
        ctx(),
        AnalysisDecision.ABORT,
        "worse by +30.0%, beyond the threshold +20.0%",
        False,
        False,
    ),
    (
        "value guard within: guards only continue",
        analysis(LATENCY),
        {"p95": arms(ArmData(n=500, value=1.0), ArmData(n=500, value=1.1))},
        ctx(),
        AnalysisDecision.CONTINUE,
        "guards only",
        False,
        False,
    ),
    (
        "lower-is-better success metric: lower cost promotes",
        analysis(
            {
                "name": "cost",
                "role": "Success",
                "direction": "Lower",
                "prometheus": {**PROM, "statistic": "Mean", "sumOfSquares": "sum(z)"},
            }
        ),
        {
            "cost": arms(
                ArmData(n=2000, summary=Summary(2000, 2000.0, 2400.0)),
                ArmData(n=2000, summary=Summary(2000, 1700.0, 1750.0)),
            )
        },
        ctx(),
        AnalysisDecision.PROMOTE,
        "significantly better",
        False,
        False,
    ),
    (
        "a zero baseline has no relative effect",
        analysis({**GUARD, "thresholdType": "Relative", "threshold": 0.5}),
        {"error-rate": arms(rate(500, 0), rate(500, 0))},
        ctx(),
        AnalysisDecision.CONTINUE,
        "baseline mean other than 0",
        False,
        False,
    ),
    (
        "more splits: alpha is shared (a borderline win is not a promotion)",
        analysis(),
        {"thumbs-up": arms(rate(3000, 1500, 4000), rate(3000, 1640, 4000)), "error-rate": EVEN_OK},
        ctx(splits=8),
        AnalysisDecision.CONTINUE,
        "not significant yet",
        False,
        False,
    ),
    (
        "the same borderline win with one split promotes",
        analysis(),
        {"thumbs-up": arms(rate(3000, 1500, 4000), rate(3000, 1640, 4000)), "error-rate": EVEN_OK},
        ctx(splits=1),
        AnalysisDecision.PROMOTE,
        "significantly better",
        False,
        False,
    ),
]


@pytest.mark.parametrize(
    ("a", "observed", "context", "decision", "fragment", "stalled", "unavailable"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(
    a: ExperimentAnalysis,
    observed: dict[str, Observation],
    context: Context,
    decision: AnalysisDecision,
    fragment: str,
    stalled: bool,
    unavailable: bool,
) -> None:
    result = decide(a, observed, context)
    assert result.decision == decision, result.reason
    assert fragment in result.reason
    assert (result.stalled, result.unavailable) == (stalled, unavailable)
    assert result.status.decision == decision
    assert result.status.looks == 1
    assert result.status.last_analysis_time == context.now.replace(microsecond=0)
    assert [m.name for m in result.status.metrics] == [m.name for m in a.metrics]
    assert result.acts == (decision in (AnalysisDecision.PROMOTE, AnalysisDecision.ABORT))
    # the status carries the numbers and fits the schema
    AnalysisStatus.model_validate(result.status.to_dict())


def test_status_numbers_of_a_promotion() -> None:
    result = decide(analysis(), {"thumbs-up": FEEDBACK_BETTER, "error-rate": EVEN_OK}, ctx())
    thumbs = result.status.metrics[0]
    assert thumbs.verdict == MetricVerdict.BETTER
    assert [arm.arm for arm in thumbs.arms] == ["baseline", "candidate"]
    assert [arm.version for arm in thumbs.arms] == [3, 4]
    assert thumbs.arms[1].samples == 3000
    assert thumbs.arms[1].value == pytest.approx(0.6)
    assert thumbs.effect == pytest.approx(0.2)
    assert thumbs.lower is not None
    assert thumbs.upper is not None
    assert 0 < thumbs.lower < 0.2 < thumbs.upper
    assert thumbs.p_value is not None
    assert thumbs.p_value < 0.05
    assert result.status.metrics[1].verdict == MetricVerdict.WITHIN
    assert result.status.sample_ratio is not None
    assert result.status.sample_ratio.p_value == pytest.approx(1.0)
    assert "candidate 0.6 vs baseline 0.5 (n 3000 vs 3000)" in result.reason


def test_dry_run_reports_without_acting() -> None:
    result = decide(analysis(dryRun=True), {"thumbs-up": FEEDBACK_BETTER, "error-rate": EVEN_OK}, ctx())
    assert result.decision == AnalysisDecision.PROMOTE
    assert not result.acts
    assert result.reason.startswith("dry run, nothing moved: would promote")
    assert result.status.dry_run


def test_split_start_is_the_last_weight_change() -> None:
    def e(minute: int, reason: str, weight: int | None) -> ExperimentHistoryEntry:
        return ExperimentHistoryEntry(time=T0 + timedelta(minutes=minute), reason=reason, weight=weight)

    history = [
        e(0, "Started", 10),
        e(5, "CandidateSet", 10),
        e(10, "StepAdvanced", 25),
        e(12, "Suspended", 25),
        e(14, "Resumed", 25),
        e(15, "AnalysisPending", None),
    ]
    assert split_start(history, T0) == T0 + timedelta(minutes=10)
    assert split_start([], T0) == T0
    assert experiment_started(history, T0 + timedelta(hours=1)) == T0


def test_due_in_and_window() -> None:
    a = analysis(interval="2m")
    assert due_in(a, None, T0) == 0
    last = AnalysisStatus(
        last_analysis_time=T0, looks=1, decision=AnalysisDecision.PENDING, reason="", dry_run=False
    )
    assert due_in(a, last, T0 + timedelta(seconds=30)) == pytest.approx(90)
    assert due_in(a, last, T0 + timedelta(minutes=5)) == 0
    assert window_text(ctx(minutes=2.5)) == "150s"
    assert window_text(Context(now=T0, started=T0, window_start=T0, weight=10)) == "1s"


def test_history_entry_only_when_the_decision_changes() -> None:
    result = decide(analysis(), {"thumbs-up": FEW, "error-rate": FEW}, ctx())
    entry = history_entry(None, result, phase="Progressing", weight=50, step=None)
    assert entry is not None
    assert (entry.reason, entry.actor) == ("AnalysisPending", ANALYSIS_ACTOR)
    assert history_entry(result.status, result, phase="Progressing", weight=50, step=None) is None
    abort = decide(analysis(), {"thumbs-up": FEW, "error-rate": ERRORS_BAD}, ctx())
    entry = history_entry(result.status, abort, phase="Progressing", weight=50, step=None)
    assert entry is not None
    assert entry.reason == "AnalysisAbort"
    assert entry.message is not None
    assert "error-rate" in entry.message
