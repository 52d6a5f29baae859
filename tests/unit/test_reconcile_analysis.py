"""Pure decisions of the automatic analysis: every rule of reconcile/analysis.py, on an injected clock."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Case:
    """What the metrics show, and what `decide` must answer (the reason must contain `fragment`)."""

    name: str
    observed: dict[str, Observation]
    decision: AnalysisDecision
    fragment: str
    analysis: ExperimentAnalysis = field(default_factory=analysis)  # a Success and a Guard metric
    context: Context = field(default_factory=ctx)  # 10 minutes in, 50%, one split
    stalled: bool = False
    unavailable: bool = False


CASES = [
    Case(
        "below minSamples is pending, never failed",
        {"thumbs-up": FEW, "error-rate": FEW},
        AnalysisDecision.PENDING,
        "waiting for 100 samples per arm",
    ),
    Case(
        "no traces yet is pending, with the note",
        {
            "thumbs-up": MetricData(rate(0, 0), rate(0, 0), note="MLflow has no experiment 'app' (yet)"),
            "error-rate": EVEN_OK,
        },
        AnalysisDecision.PENDING,
        "(MLflow has no experiment 'app' (yet))",
    ),
    Case(
        "guard breached aborts at once",
        {"thumbs-up": FEW, "error-rate": ERRORS_BAD},
        AnalysisDecision.ABORT,
        "guard breached: error-rate",
    ),
    Case(
        "guard breached aborts even when another source is down",
        {"thumbs-up": DOWN, "error-rate": ERRORS_BAD},
        AnalysisDecision.ABORT,
        "worse than the threshold +0.02",
    ),
    Case(
        "dead source holds (never promotes)",
        {"thumbs-up": FEEDBACK_BETTER, "error-rate": DOWN},
        AnalysisDecision.HOLD,
        "connection refused",
        unavailable=True,
    ),
    Case(
        "broken query holds and stalls",
        {"thumbs-up": FEEDBACK_BETTER, "error-rate": BAD_QUERY},
        AnalysisDecision.HOLD,
        "bad_data",
        stalled=True,
    ),
    Case(
        "missing observation holds",
        {"thumbs-up": FEEDBACK_BETTER},
        AnalysisDecision.HOLD,
        "no data was read",
        unavailable=True,
    ),
    Case(
        "success significantly better promotes",
        {"thumbs-up": FEEDBACK_BETTER, "error-rate": EVEN_OK},
        AnalysisDecision.PROMOTE,
        "significantly better",
    ),
    Case(
        "better but a guard leans the wrong way continues",
        {"thumbs-up": FEEDBACK_BETTER, "error-rate": ERRORS_LEANING},
        AnalysisDecision.CONTINUE,
        "a guard leans the wrong way",
    ),
    Case(
        "success significantly worse aborts",
        {"thumbs-up": FEEDBACK_WORSE, "error-rate": EVEN_OK},
        AnalysisDecision.ABORT,
        "significantly worse",
    ),
    Case(
        "A/A continues",
        {"thumbs-up": FEEDBACK_SAME, "error-rate": EVEN_OK},
        AnalysisDecision.CONTINUE,
        "not significant yet",
    ),
    Case(
        "A/A at maxDuration holds by default",
        {"thumbs-up": FEEDBACK_SAME, "error-rate": EVEN_OK},
        AnalysisDecision.HOLD,
        "maxDuration 1h reached without a decision (onInconclusive Hold)",
        analysis=analysis(maxDuration="1h"),
        context=ctx(minutes=61),
    ),
    Case(
        "A/A at maxDuration aborts with onInconclusive Abort",
        {"thumbs-up": FEEDBACK_SAME, "error-rate": EVEN_OK},
        AnalysisDecision.ABORT,
        "onInconclusive Abort",
        analysis=analysis(maxDuration="1h", onInconclusive="Abort"),
        context=ctx(minutes=60),
    ),
    Case(
        "A/A at maxDuration promotes with onInconclusive Promote",
        {"thumbs-up": FEEDBACK_SAME, "error-rate": EVEN_OK},
        AnalysisDecision.PROMOTE,
        "onInconclusive Promote",
        analysis=analysis(maxDuration="1h", onInconclusive="Promote"),
        context=ctx(minutes=60),
    ),
    Case(
        "onInconclusive Promote holds when a guard leans the wrong way",
        {"thumbs-up": FEEDBACK_SAME, "error-rate": ERRORS_LEANING},
        AnalysisDecision.HOLD,
        "a guard leans the wrong way",
        analysis=analysis(maxDuration="1h", onInconclusive="Promote"),
        context=ctx(minutes=60),
    ),
    Case(
        "onInconclusive Promote never promotes below minSamples",
        {"thumbs-up": FEW, "error-rate": FEW},
        AnalysisDecision.HOLD,
        "too few samples",
        analysis=analysis(maxDuration="1h", onInconclusive="Promote"),
        context=ctx(minutes=60),
    ),
    Case(
        "onInconclusive Abort applies below minSamples",
        {"thumbs-up": FEW, "error-rate": FEW},
        AnalysisDecision.ABORT,
        "maxDuration 1h reached",
        analysis=analysis(maxDuration="1h", onInconclusive="Abort"),
        context=ctx(minutes=60),
    ),
    Case(
        "before maxDuration nothing inconclusive happens",
        {"thumbs-up": FEEDBACK_SAME, "error-rate": EVEN_OK},
        AnalysisDecision.CONTINUE,
        "not significant yet",
        analysis=analysis(maxDuration="1h", onInconclusive="Abort"),
        context=ctx(minutes=59),
    ),
    Case(
        "sample-ratio mismatch holds before trusting a breach",
        {"thumbs-up": FEEDBACK_BETTER, "error-rate": arms(rate(5000, 50), rate(3000, 500))},
        AnalysisDecision.HOLD,
        "sample-ratio mismatch on error-rate",
        context=ctx(weight=50),
    ),
    Case(
        "sample ratio matching a 10% split is fine",
        {
            "thumbs-up": arms(rate(3000, 1500, 9000), rate(1000, 600, 1000)),
            "error-rate": arms(rate(9000, 90), rate(1000, 10)),
        },
        AnalysisDecision.PROMOTE,
        "significantly better",
        context=ctx(weight=10),
    ),
    Case(
        "sample-ratio check off",
        {"thumbs-up": FEEDBACK_SAME, "error-rate": arms(rate(5000, 50), rate(3000, 30))},
        AnalysisDecision.CONTINUE,
        "not significant yet",
        analysis=analysis(sampleRatioAlpha=0),
        context=ctx(weight=50),
    ),
    Case(
        "value guard breached (p95 30% slower)",
        {"p95": arms(ArmData(n=500, value=1.0), ArmData(n=500, value=1.3))},
        AnalysisDecision.ABORT,
        "worse by +30.0%, beyond the threshold +20.0%",
        analysis=analysis(LATENCY),
    ),
    Case(
        "value guard within: guards only continue",
        {"p95": arms(ArmData(n=500, value=1.0), ArmData(n=500, value=1.1))},
        AnalysisDecision.CONTINUE,
        "guards only",
        analysis=analysis(LATENCY),
    ),
    Case(
        "lower-is-better success metric: lower cost promotes",
        {
            "cost": arms(
                ArmData(n=2000, summary=Summary(2000, 2000.0, 2400.0)),
                ArmData(n=2000, summary=Summary(2000, 1700.0, 1750.0)),
            )
        },
        AnalysisDecision.PROMOTE,
        "significantly better",
        analysis=analysis(
            {
                "name": "cost",
                "role": "Success",
                "direction": "Lower",
                "prometheus": {**PROM, "statistic": "Mean", "sumOfSquares": "sum(z)"},
            }
        ),
    ),
    Case(
        "a zero baseline has no relative effect",
        {"error-rate": arms(rate(500, 0), rate(500, 0))},
        AnalysisDecision.CONTINUE,
        "baseline mean other than 0",
        analysis=analysis({**GUARD, "thresholdType": "Relative", "threshold": 0.5}),
    ),
    Case(
        "more splits: alpha is shared (a borderline win is not a promotion)",
        {"thumbs-up": arms(rate(3000, 1500, 4000), rate(3000, 1640, 4000)), "error-rate": EVEN_OK},
        AnalysisDecision.CONTINUE,
        "not significant yet",
        context=ctx(splits=8),
    ),
    Case(
        "the same borderline win with one split promotes",
        {"thumbs-up": arms(rate(3000, 1500, 4000), rate(3000, 1640, 4000)), "error-rate": EVEN_OK},
        AnalysisDecision.PROMOTE,
        "significantly better",
        context=ctx(splits=1),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_decide(case: Case) -> None:
    result = decide(case.analysis, case.observed, case.context)
    assert result.decision == case.decision, result.reason
    assert case.fragment in result.reason
    assert (result.stalled, result.unavailable) == (case.stalled, case.unavailable)
    assert result.status.decision == case.decision
    assert result.status.looks == 1
    assert result.status.last_analysis_time == case.context.now.replace(microsecond=0)
    assert [m.name for m in result.status.metrics] == [m.name for m in case.analysis.metrics]
    assert result.acts == (case.decision in (AnalysisDecision.PROMOTE, AnalysisDecision.ABORT))
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
