"""What the automatic analysis adds to an experiment pass: its conditions, its wake-up, its history (pure).

handlers/experiment_analysis.py reads the metrics and writes status.analysis when a look is due
(`due_in`); between looks and after one, the pass applies an `AnalysisHook` to its own outcome and
delay. The hook of a stored analysis (`conditions_of`) is what every pass between looks applies, so
the conditions stay steady while nothing is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from promptalias.api.experiment import (
    AnalysisDecision,
    AnalysisStatus,
    ExperimentHistoryEntry,
    PromptExperiment,
)
from promptalias.reconcile.analysis import (
    HOLD_QUERY_FAILED,
    HOLD_SAMPLE_RATIO,
    HOLD_UNAVAILABLE,
    Analysis,
    Context,
    experiment_started,
    history_entry,
    split_count,
    split_start,
)
from promptalias.reconcile.experiment import Baseline, Progress
from promptalias.reconcile.experiment_status import Outcome


class AnalysisReason:
    """Condition reasons of the analysis (docs/experiments.md, *Analysis*)."""

    ANALYSING = "Analysing"
    """Reconciling: the analysis runs and has not decided yet (Pending or Continue)."""
    UNAVAILABLE = "AnalysisUnavailable"
    """Reconciling: a metric source is down; the experiment holds and the next look retries."""
    QUERY_FAILED = "AnalysisQueryFailed"
    """Stalled: a query or source setting is wrong (Prometheus refused it, unknown experiment)."""
    SAMPLE_RATIO_MISMATCH = "SampleRatioMismatch"
    """Stalled: the arms' counts do not match the weight (routing/client bug); holding."""


@dataclass
class AnalysisHook:
    """What the experiment pass applies after the analysis."""

    history: list[ExperimentHistoryEntry] = field(default_factory=list)
    reconciling: str | None = None
    stalled: str | None = None
    message: str | None = None
    wake_after: float | None = None

    def apply(self, outcome: Outcome) -> Outcome:
        """The pass's outcome with the analysis' conditions (a promotion in progress wins)."""
        if self.stalled is not None and not outcome.stalled and outcome.ready:
            return replace(
                outcome, ready=False, reason=self.stalled, message=self.message or "", stalled=True
            )
        if self.reconciling is not None and not outcome.reconciling and outcome.ready:
            return replace(
                outcome,
                reconciling=True,
                reconciling_reason=self.reconciling,
                message=f"{outcome.message}; analysis: {self.message}"[:32768]
                if self.message
                else outcome.message,
            )
        return outcome

    def delay(self, delay: float) -> float:
        return delay if self.wake_after is None else min(delay, max(0.05, self.wake_after))


def conditions_of(status: AnalysisStatus | None) -> AnalysisHook:
    """The conditions a stored analysis implies (passes between looks keep them steady)."""
    if status is None:
        return AnalysisHook(reconciling=AnalysisReason.ANALYSING, message="waiting for the first analysis")
    if status.decision == AnalysisDecision.HOLD:
        for prefix, hook in (
            (HOLD_QUERY_FAILED, AnalysisHook(stalled=AnalysisReason.QUERY_FAILED)),
            (HOLD_SAMPLE_RATIO, AnalysisHook(stalled=AnalysisReason.SAMPLE_RATIO_MISMATCH)),
            (HOLD_UNAVAILABLE, AnalysisHook(reconciling=AnalysisReason.UNAVAILABLE)),
        ):
            if status.reason.startswith(prefix):
                hook.message = status.reason
                return hook
    if status.decision in (AnalysisDecision.PENDING, AnalysisDecision.CONTINUE) or status.dry_run:
        return AnalysisHook(reconciling=AnalysisReason.ANALYSING, message=status.reason)
    return AnalysisHook()  # decided (Promote/Abort act through the annotation) or held at maxDuration


def analysing(progress: Progress) -> bool:
    """The analysis looks only while the split is served and the ramp is not promoting."""
    return progress.publishes and not progress.promote and progress.weight > 0


def look_context(exp: PromptExperiment, progress: Progress, baseline: Baseline, now: datetime) -> Context:
    """What one look judges against: the experiment's start, the current split's window and weight."""
    last = exp.status.analysis
    history = [*exp.status.history, *progress.history]
    return Context(
        now=now,
        started=experiment_started(history, now),
        window_start=split_start(history, now),
        weight=progress.weight,
        splits=split_count(len(exp.spec.steps)) if exp.spec.steps else 1,
        baseline_version=baseline.resolved_version,
        candidate_version=exp.spec.candidate.version,
        looks=last.looks if last is not None else 0,
    )


def after_look(
    last: AnalysisStatus | None, result: Analysis, progress: Progress, *, interval_s: float
) -> AnalysisHook:
    """The hook once a look's status is written: its conditions, the next look, its history entry."""
    hook = conditions_of(result.status)
    hook.wake_after = interval_s
    entry = history_entry(last, result, phase=progress.phase, weight=progress.weight, step=progress.step)
    if entry is not None:
        hook.history.append(entry)
    return hook


__all__ = ["AnalysisHook", "AnalysisReason", "after_look", "analysing", "conditions_of", "look_context"]
