"""The pure parts of handlers/experiment_analysis.py: conditions from a stored analysis, how the
hook changes the pass's outcome and the exported gauges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from experiment_kit import THUMBS
from promptalias.api.experiment import AnalysisDecision, AnalysisStatus, ExperimentAnalysis
from promptalias.handlers.experiment_analysis import (
    AnalysisHook,
    AnalysisReason,
    _conditions_of,
    record_gauges,
    write_gauges,
)
from promptalias.prometheus import TextWriter
from promptalias.reconcile.analysis import (
    HOLD_QUERY_FAILED,
    HOLD_SAMPLE_RATIO,
    HOLD_UNAVAILABLE,
    ArmData,
    Context,
    MetricData,
    decide,
)
from promptalias.reconcile.experiment_status import Outcome
from promptalias.reconcile.stats import Summary

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def stored(decision: AnalysisDecision, reason: str = "", dry_run: bool = False) -> AnalysisStatus:
    return AnalysisStatus(looks=3, decision=decision, reason=reason, dry_run=dry_run)


@pytest.mark.parametrize(
    ("status", "reconciling", "stalled"),
    [
        (None, AnalysisReason.ANALYSING, None),
        (stored(AnalysisDecision.PENDING, "waiting"), AnalysisReason.ANALYSING, None),
        (stored(AnalysisDecision.CONTINUE, "not significant yet"), AnalysisReason.ANALYSING, None),
        (
            stored(AnalysisDecision.HOLD, f"{HOLD_UNAVAILABLE}, holding: refused"),
            AnalysisReason.UNAVAILABLE,
            None,
        ),
        (
            stored(AnalysisDecision.HOLD, f"{HOLD_QUERY_FAILED}, holding: bad_data"),
            None,
            AnalysisReason.QUERY_FAILED,
        ),
        (
            stored(AnalysisDecision.HOLD, f"{HOLD_SAMPLE_RATIO} on x"),
            None,
            AnalysisReason.SAMPLE_RATIO_MISMATCH,
        ),
        (stored(AnalysisDecision.HOLD, "maxDuration 1h reached without a decision"), None, None),
        (stored(AnalysisDecision.PROMOTE, "significantly better"), None, None),
        (
            stored(AnalysisDecision.PROMOTE, "dry run, nothing moved", dry_run=True),
            AnalysisReason.ANALYSING,
            None,
        ),
    ],
)
def test_conditions_from_the_stored_analysis(
    status: AnalysisStatus | None, reconciling: str | None, stalled: str | None
) -> None:
    hook = _conditions_of(status)
    assert (hook.reconciling, hook.stalled) == (reconciling, stalled)


def test_hook_marks_the_outcome() -> None:
    ready = Outcome(ready=True, reason="Synced", message="Candidate receives 50%")
    running = AnalysisHook(reconciling=AnalysisReason.ANALYSING, message="waiting for 100 samples").apply(
        ready
    )
    assert (running.ready, running.reconciling, running.reconciling_reason) == (True, True, "Analysing")
    assert running.message == "Candidate receives 50%; analysis: waiting for 100 samples"
    broken = AnalysisHook(stalled=AnalysisReason.QUERY_FAILED, message="bad_data").apply(ready)
    assert (broken.ready, broken.stalled, broken.reason, broken.message) == (
        False,
        True,
        "AnalysisQueryFailed",
        "bad_data",
    )
    promoting = Outcome(
        ready=True, reason="Synced", message="promoting", reconciling=True, reconciling_reason="Promoting"
    )
    assert AnalysisHook(reconciling=AnalysisReason.ANALYSING, message="x").apply(promoting) == promoting
    assert AnalysisHook().apply(ready) == ready
    assert AnalysisHook(wake_after=2.0).delay(60.0) == 2.0
    assert AnalysisHook().delay(60.0) == 60.0


def test_gauges_have_one_series_per_arm_and_bound() -> None:
    spec = ExperimentAnalysis.model_validate({"metrics": [THUMBS]})
    data = MetricData(
        ArmData(n=500, summary=Summary.rate(500, 250)), ArmData(n=500, summary=Summary.rate(500, 300))
    )
    status = decide(spec, {"thumbs": data}, Context(now=NOW, started=NOW, window_start=NOW, weight=50)).status
    record_gauges("billing", "gauge-test", status)
    out = TextWriter()
    write_gauges(out)
    text = out.render()
    base = 'experiment="gauge-test",metric="thumbs",namespace="billing"'
    assert f'promptalias_experiment_analysis_arm_value{{arm="candidate",{base}}} 0.6' in text
    assert f'promptalias_experiment_analysis_arm_samples{{arm="baseline",{base}}} 500' in text
    for bound in ("estimate", "lower", "upper"):
        assert f'promptalias_experiment_analysis_effect{{bound="{bound}",{base}}}' in text
    who = f'decision="{status.decision}",experiment="gauge-test",namespace="billing"'
    assert f"promptalias_experiment_analysis_decision{{{who}}} 1" in text
