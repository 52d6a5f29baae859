"""What the automatic analysis of an experiment decides (pure: no I/O, table-driven tests).

Every `interval` the handler reads each metric's per-arm numbers (Prometheus, MLflow feedback) and
calls `decide`. The order of the rules is the contract (docs/experiments.md, *Analysis*):

1. a sample-ratio mismatch (arm counts against the weight) holds: the numbers cannot be trusted;
2. a Guard breached with confidence 1 - alpha (both arms at minSamples) aborts at once, even when
   another source is down (aborting is always safe);
3. a source that is down or a query that fails holds: never a promotion on missing data;
4. below minSamples in any arm of any metric: Pending (never a failure) — at maxDuration the
   policy applies, but Promote then holds instead;
5. the Success metric significantly worse aborts; significantly better (and no Guard's estimate
   beyond its threshold) promotes;
6. at maxDuration: onInconclusive (Hold, Abort, or Promote unless a Guard leans the wrong way);
7. otherwise: Continue.

Samples count only under the current split (the weight): the window starts when the weight last
changed, and each split gets its own sequential test at alpha / (number of splits the ramp goes
through), so the error over the whole experiment stays below alpha (Bonferroni).

The inputs (`ArmData`, `MetricData`, `SourceFailure`, `Context`) and the verdict of one metric
(`judge_metric`) are in reconcile/analysis_metric.py, re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from promptalias.api.duration import parse_duration
from promptalias.api.experiment import (
    AnalysisDecision,
    AnalysisMetric,
    AnalysisStatus,
    ExperimentAnalysis,
    ExperimentHistoryEntry,
    InconclusivePolicy,
    MetricAnalysis,
    MetricRole,
    MetricVerdict,
    SampleRatioStatus,
)
from promptalias.reconcile.analysis_metric import (
    ArmData,
    Context,
    Judged,
    MetricData,
    Observation,
    SourceFailure,
    finite,
    judge_metric,
)
from promptalias.reconcile.stats import (
    sample_ratio,
)

ANALYSIS_ACTOR: Final = "promptalias-analysis"
"""The actor of the analysis' history entries, and the field manager of the promote/abort
annotations it sets (so the experiment's history names it as who promoted or aborted)."""
HOLD_UNAVAILABLE: Final = "cannot read the metrics"
HOLD_QUERY_FAILED: Final = "a metric query or source setting is wrong"
HOLD_SAMPLE_RATIO: Final = "sample-ratio mismatch"
"""Prefixes of the Hold reasons, from which the handler derives its conditions."""


@dataclass(frozen=True)
class Analysis:
    """The outcome of one analysis."""

    decision: AnalysisDecision
    reason: str
    status: AnalysisStatus
    stalled: bool = False
    """A query or source configuration is wrong: Stalled until the spec is fixed."""
    unavailable: bool = False
    """A source is down: Reconciling, retried at the next interval."""

    @property
    def acts(self) -> bool:
        """Whether the handler must promote or abort (never in a dry run)."""
        return not self.status.dry_run and self.decision in (AnalysisDecision.PROMOTE, AnalysisDecision.ABORT)


def split_start(history: Sequence[ExperimentHistoryEntry], fallback: datetime) -> datetime:
    """When the current split began: the last history entry whose weight differs from the one before
    (Started, StepAdvanced, WeightChanged, Completed); `fallback` when there is none."""
    start: datetime | None = None
    previous: int | None = None
    for entry in history:
        if entry.weight is None:
            continue
        if start is None or entry.weight != previous:
            start = entry.time
        previous = entry.weight
    return start if start is not None else fallback


def experiment_started(history: Sequence[ExperimentHistoryEntry], fallback: datetime) -> datetime:
    for entry in history:
        if entry.reason == "Started":
            return entry.time
    return fallback


def split_count(steps: int) -> int:
    """Splits a ramp goes through: each step's weight, then the final weight."""
    return steps + 1


def due_in(analysis: ExperimentAnalysis, last: AnalysisStatus | None, now: datetime) -> float:
    """Seconds until the next analysis is due (0: now)."""
    if last is None or last.last_analysis_time is None:
        return 0.0
    elapsed = (now - last.last_analysis_time).total_seconds()
    return max(0.0, parse_duration(analysis.interval) - elapsed)


def window_text(ctx: Context) -> str:
    """The PromQL range for {{window}}: whole seconds since the split began (at least 1s)."""
    return f"{max(1, math.ceil((ctx.now - ctx.window_start).total_seconds()))}s"


# ---- the decision ---------------------------------------------------------------------------------


def _failed_metric(metric: AnalysisMetric, failure: SourceFailure) -> MetricAnalysis:
    return MetricAnalysis(
        name=metric.name,
        role=metric.role,
        arms=[],
        verdict=MetricVerdict.ERROR,
        reason=f"{metric.name}: {failure.message}"[:1024],
    )


def _sample_ratio_check(
    analysis: ExperimentAnalysis, observed: Mapping[str, Observation], weight: int
) -> tuple[SampleRatioStatus | None, str | None]:
    """Every metric with exposure counts is checked; the status shows the first mismatch, or the
    metric with the most exposures. Returns (status, reason when a check fails)."""
    if not 0 < weight < 100:
        return None, None
    shown: tuple[int, SampleRatioStatus] | None = None
    for metric in analysis.metrics:
        data = observed.get(metric.name)
        if not isinstance(data, MetricData):
            continue
        b, c = data.baseline.exposures, data.candidate.exposures
        if b is None or c is None:
            continue
        check = sample_ratio(b, c, weight / 100)
        status = SampleRatioStatus(
            baseline=b,
            candidate=c,
            expected_share=weight / 100,
            observed_share=finite(check.observed_share),
            p_value=check.p_value,
        )
        if analysis.sample_ratio_alpha > 0 and check.p_value < analysis.sample_ratio_alpha:
            return status, (
                f"{HOLD_SAMPLE_RATIO} on {metric.name}: the candidate got "
                f"{check.observed_share * 100:.2f}% of {b + c} requests, configured {weight}% "
                f"(chi-square p={check.p_value:.2g} < "
                f"{analysis.sample_ratio_alpha:g}): a routing or client bug; holding until it "
                "is fixed (clients must pass a routing key on every request; sampleRatioAlpha: 0 "
                "turns the check off)"
            )
        if shown is None or b + c > shown[0]:
            shown = (b + c, status)
    return (shown[1] if shown else None), None


def decide(analysis: ExperimentAnalysis, observed: Mapping[str, Observation], ctx: Context) -> Analysis:
    """The decision of one analysis (rules in the module docstring)."""
    alpha = analysis.alpha / max(1, ctx.splits)
    metrics: list[MetricAnalysis] = []
    judged: dict[str, Judged] = {}
    failures: list[SourceFailure] = []
    for metric in analysis.metrics:
        data = observed.get(metric.name)
        if data is None:
            data = SourceFailure("no data was read for this metric", permanent=False)
        if isinstance(data, SourceFailure):
            failures.append(data)
            metrics.append(_failed_metric(metric, data))
            continue
        verdict = judge_metric(
            metric, data, alpha=alpha, power=analysis.power, min_samples=analysis.min_samples, ctx=ctx
        )
        judged[metric.name] = verdict
        metrics.append(verdict.status)
    ratio, mismatch = _sample_ratio_check(analysis, observed, ctx.weight)
    over = analysis.max_duration is not None and ctx.now - ctx.started >= timedelta(
        seconds=parse_duration(analysis.max_duration)
    )

    def result(decision: AnalysisDecision, reason: str, **flags: bool) -> Analysis:
        if analysis.dry_run and decision in (AnalysisDecision.PROMOTE, AnalysisDecision.ABORT):
            reason = f"dry run, nothing moved: would {decision.lower()}: {reason}"
        status = AnalysisStatus(
            last_analysis_time=ctx.now.replace(microsecond=0),
            window_start=ctx.window_start.replace(microsecond=0),
            weight=ctx.weight,
            looks=ctx.looks + 1,
            decision=decision,
            reason=reason[:2048],
            dry_run=analysis.dry_run,
            sample_ratio=ratio,
            metrics=metrics,
        )
        return Analysis(decision, reason[:2048], status, **flags)

    if mismatch is not None:
        return result(AnalysisDecision.HOLD, mismatch)
    breached = [j for j in judged.values() if j.status.verdict == MetricVerdict.BREACHED]
    if breached:
        return result(AnalysisDecision.ABORT, f"guard breached: {breached[0].status.reason}")
    if failures:
        permanent = [f for f in failures if f.permanent]
        first = (permanent or failures)[0]
        why = HOLD_QUERY_FAILED if permanent else HOLD_UNAVAILABLE
        return result(
            AnalysisDecision.HOLD,
            f"{why}, holding (never promoting on missing data): {first.message}",
            stalled=bool(permanent),
            unavailable=not permanent,
        )
    pending = [j for j in judged.values() if not j.enough]
    if pending:
        waiting = pending[0].status.reason
        if over:
            if analysis.on_inconclusive == InconclusivePolicy.ABORT:
                return result(
                    AnalysisDecision.ABORT, f"maxDuration {analysis.max_duration} reached: {waiting}"
                )
            return result(
                AnalysisDecision.HOLD,
                f"maxDuration {analysis.max_duration} reached with too few samples (never promoting on "
                f"missing data): {waiting}",
            )
        return result(AnalysisDecision.PENDING, waiting)
    success = next((j for j in judged.values() if j.status.role == MetricRole.SUCCESS), None)
    leaning = [j for j in judged.values() if j.leaning_bad]
    if success is not None and success.status.verdict == MetricVerdict.WORSE:
        return result(AnalysisDecision.ABORT, success.status.reason)
    if over:
        return _inconclusive(analysis, success, leaning, result)
    if success is not None and success.status.verdict == MetricVerdict.BETTER:
        if leaning:
            return result(
                AnalysisDecision.CONTINUE,
                f"{success.status.reason}, but a guard leans the wrong way: {leaning[0].status.reason}",
            )
        return result(AnalysisDecision.PROMOTE, success.status.reason)
    if success is not None:
        return result(AnalysisDecision.CONTINUE, success.status.reason)
    guards = "; ".join(j.status.reason for j in judged.values())
    return result(AnalysisDecision.CONTINUE, f"guards only, waiting for maxDuration: {guards}")


def _inconclusive(
    analysis: ExperimentAnalysis,
    success: Judged | None,
    leaning: list[Judged],
    result: Callable[..., Analysis],
) -> Analysis:
    policy = analysis.on_inconclusive
    where = f"maxDuration {analysis.max_duration} reached without a decision (onInconclusive {policy})"
    detail = success.status.reason if success is not None else "guards only"
    if policy == InconclusivePolicy.ABORT:
        return result(AnalysisDecision.ABORT, f"{where}: {detail}")
    if policy == InconclusivePolicy.PROMOTE and not leaning:
        return result(AnalysisDecision.PROMOTE, f"{where}: {detail}")
    if policy == InconclusivePolicy.PROMOTE:
        return result(
            AnalysisDecision.HOLD, f"{where}, but a guard leans the wrong way: {leaning[0].status.reason}"
        )
    return result(AnalysisDecision.HOLD, f"{where}: {detail}; promote or abort by hand")


def history_entry(
    previous: AnalysisStatus | None, new: Analysis, *, phase: object, weight: int, step: int | None
) -> ExperimentHistoryEntry | None:
    """A history entry when the decision changed (not at every look: the history holds 100)."""
    if previous is not None and previous.decision == new.decision and previous.dry_run == new.status.dry_run:
        return None
    return ExperimentHistoryEntry.model_validate(
        {
            "time": new.status.last_analysis_time,
            "reason": f"Analysis{new.decision.value}",
            "phase": phase,
            "weight": weight,
            "step": step,
            "actor": ANALYSIS_ACTOR,
            "message": new.reason[:1024],
        }
    )


__all__ = [
    "ANALYSIS_ACTOR",
    "HOLD_QUERY_FAILED",
    "HOLD_SAMPLE_RATIO",
    "HOLD_UNAVAILABLE",
    "Analysis",
    "ArmData",
    "Context",
    "MetricData",
    "Observation",
    "SourceFailure",
    "decide",
    "due_in",
    "experiment_started",
    "history_entry",
    "judge_metric",
    "split_count",
    "split_start",
    "window_text",
]
