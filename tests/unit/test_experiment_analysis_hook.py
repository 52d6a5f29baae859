"""What the analysis adds to an experiment pass (reconcile/analysis_hook.py): conditions from a stored
analysis, how the hook changes the pass's outcome, a look's context and its aftermath; and the gauges
handlers/experiment_analysis.py exports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from experiment_kit import THUMBS, baseline, spec
from promptalias.api.experiment import (
    AnalysisDecision,
    AnalysisStatus,
    ExperimentAnalysis,
    ExperimentHistoryEntry,
    ExperimentPhase,
    PromptExperiment,
)
from promptalias.handlers.experiment_analysis import record_gauges, write_gauges
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
from promptalias.reconcile.analysis_hook import (
    AnalysisHook,
    AnalysisReason,
    after_look,
    analysing,
    conditions_of,
    look_context,
)
from promptalias.reconcile.experiment import Progress
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
    hook = conditions_of(status)
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


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (Progress(ExperimentPhase.PROGRESSING, 50, None), True),
        (Progress(ExperimentPhase.PAUSED, 10, 0), True),  # a paused step still serves its split
        (Progress(ExperimentPhase.PROGRESSING, 50, None, promote=True), False),
        (Progress(ExperimentPhase.PROGRESSING, 0, 0), False),
        (Progress(ExperimentPhase.PROMOTED, 100, None), False),
        (Progress(None, 50, None), False),
    ],
    ids=str,
)
def test_analysing_only_while_a_split_is_served(progress: Progress, expected: bool) -> None:
    assert analysing(progress) is expected


def entry(reason: str, minutes: int, weight: int) -> ExperimentHistoryEntry:
    return ExperimentHistoryEntry.model_validate(
        {"time": NOW + timedelta(minutes=minutes), "reason": reason, "weight": weight}
    )


def test_a_look_judges_the_current_split_since_it_began() -> None:
    exp = PromptExperiment.model_validate(
        {
            "metadata": {"name": "e", "namespace": "billing"},
            "spec": spec(steps=[{"weight": 10}, {"weight": 50}]).to_dict(),
            "status": {
                "history": [entry("Started", 0, 10).to_dict()],
                "analysis": stored(AnalysisDecision.CONTINUE).to_dict(),
            },
        }
    )
    moved = Progress(ExperimentPhase.PROGRESSING, 50, 1, history=(entry("StepAdvanced", 30, 50),))
    ctx = look_context(exp, moved, baseline(resolved_version=2), NOW + timedelta(hours=1))
    assert (ctx.started, ctx.window_start) == (NOW, NOW + timedelta(minutes=30))
    assert (ctx.weight, ctx.splits, ctx.looks) == (50, 3, 3)
    assert (ctx.baseline_version, ctx.candidate_version) == (2, 4)
    first = PromptExperiment.model_validate({"metadata": {"name": "e"}, "spec": spec().to_dict()})
    ctx = look_context(first, Progress(ExperimentPhase.PROGRESSING, 50, None), baseline(), NOW)
    assert (ctx.started, ctx.window_start, ctx.splits, ctx.looks) == (NOW, NOW, 1, 0)


def test_after_a_look_the_next_is_an_interval_away_and_a_new_decision_is_history() -> None:
    analysis = ExperimentAnalysis.model_validate({"metrics": [THUMBS]})
    thin = MetricData(ArmData(n=5, summary=Summary.rate(5, 2)), ArmData(n=5, summary=Summary.rate(5, 3)))
    result = decide(analysis, {"thumbs": thin}, Context(now=NOW, started=NOW, window_start=NOW, weight=50))
    progress = Progress(ExperimentPhase.PROGRESSING, 50, None)
    hook = after_look(None, result, progress, interval_s=300.0)
    assert (hook.reconciling, hook.wake_after) == (AnalysisReason.ANALYSING, 300.0)
    assert [e.reason for e in hook.history] == [f"Analysis{result.decision.value}"]
    assert after_look(result.status, result, progress, interval_s=300.0).history == []


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
