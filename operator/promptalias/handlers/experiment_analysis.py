"""The automatic analysis of a PromptExperiment (spec.analysis), run inside the experiment pass.

Every `interval` (timed from status.analysis.lastAnalysisTime, so restarts neither skip nor repeat a
look) it reads each metric for both arms — Prometheus instant queries, MLflow trace feedback from the
baseline's registry — decides with reconcile/analysis.py (pure), writes status.analysis, and acts
the way a person would: a promotion or abort is the `promptalias.io/promote` / `promptalias.io/abort`
annotation, set with the field manager `promptalias-analysis`, so it takes the same path as
`promptalias experiment promote` (GitOps baselines get the Git change reported) and the history
names the analysis as the actor. The experiment pass calls `analysis_hook` and applies the returned
`AnalysisHook` to its outcome (conditions) and delay.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from kubernetes.client.exceptions import ApiException

from promptalias.api.experiment import (
    AnalysisDecision,
    AnalysisStatus,
    ExperimentHistoryEntry,
    PromptExperiment,
)
from promptalias.api.types import GROUP, VERSION
from promptalias.kube import Kube, KubeError
from promptalias.prometheus import Sample, TextWriter
from promptalias.reconcile.analysis import (
    ANALYSIS_ACTOR,
    HOLD_QUERY_FAILED,
    HOLD_SAMPLE_RATIO,
    HOLD_UNAVAILABLE,
    Analysis,
    Context,
    decide,
    due_in,
    experiment_started,
    history_entry,
    split_count,
    split_start,
)
from promptalias.reconcile.experiment import Baseline, Progress
from promptalias.reconcile.experiment_status import Outcome
from promptalias.reconcile.status_patch import merge_patch
from promptalias.reconcile.timestamps import format_timestamp
from promptalias.registry import MlflowRegistry
from promptalias.sources.observe import observe
from promptalias.vocabulary import ABORT_ANNOTATION, PROMOTE_ANNOTATION

log = logging.getLogger(__name__)

PLURAL: Final = PromptExperiment.PLURAL


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


def _conditions_of(status: AnalysisStatus | None) -> AnalysisHook:
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


# ---- Prometheus gauges of the last analyses (the Grafana "Analysis" row) -------------------------

_GAUGES: dict[tuple[str, str], AnalysisStatus] = {}


def record_gauges(namespace: str, name: str, status: AnalysisStatus) -> None:
    _GAUGES[(namespace, name)] = status


def write_gauges(out: TextWriter) -> None:
    """The last look of every analysis, for handlers/metrics.py (the Grafana "Analysis" row)."""
    values: list[Sample] = []
    samples: list[Sample] = []
    effects: list[Sample] = []
    decisions: list[Sample] = []
    for (namespace, name), status in sorted(_GAUGES.items()):
        base = {"namespace": namespace, "experiment": name}
        decisions.append(({**base, "decision": str(status.decision)}, 1))
        for metric in status.metrics:
            labels = {**base, "metric": metric.name}
            for arm in metric.arms:
                samples.append(({**labels, "arm": arm.arm}, arm.samples))
                if arm.value is not None:
                    values.append(({**labels, "arm": arm.arm}, arm.value))
            for bound, value in (
                ("estimate", metric.effect),
                ("lower", metric.lower),
                ("upper", metric.upper),
            ):
                if value is not None:
                    effects.append(({**labels, "bound": bound}, value))
    out.metric(
        "promptalias_experiment_analysis_arm_value",
        "gauge",
        "Mean or rate of each arm at the last analysis.",
        values,
    )
    out.metric(
        "promptalias_experiment_analysis_arm_samples",
        "gauge",
        "Samples of each arm at the last analysis.",
        samples,
    )
    out.metric(
        "promptalias_experiment_analysis_effect",
        "gauge",
        "Effect of the candidate and its confidence sequence (bound: estimate, lower, upper).",
        effects,
    )
    out.metric(
        "promptalias_experiment_analysis_decision",
        "gauge",
        "The last decision (1 for the current one).",
        decisions,
    )


async def analysis_hook(
    *,
    kube: Kube,
    exp: PromptExperiment,
    namespace: str,
    name: str,
    now: datetime,
    progress: Progress,
    baseline: Baseline,
    client: MlflowRegistry,
) -> AnalysisHook:
    """Run the analysis when it is due; `exp.status.analysis` is updated in place once written."""
    analysis = exp.spec.analysis
    running = progress.publishes and not progress.promote and progress.weight > 0
    if analysis is None or not running:
        return AnalysisHook()
    last = exp.status.analysis
    due = due_in(analysis, last, now)
    if due > 0:
        hook = _conditions_of(last)
        hook.wake_after = due
        return hook
    history = [*exp.status.history, *progress.history]
    ctx = Context(
        now=now,
        started=experiment_started(history, now),
        window_start=split_start(history, now),
        weight=progress.weight,
        splits=split_count(len(exp.spec.steps)) if exp.spec.steps else 1,
        baseline_version=baseline.resolved_version,
        candidate_version=exp.spec.candidate.version,
        looks=last.looks if last is not None else 0,
    )
    observed = await observe(analysis.metrics, ctx, baseline, exp.spec.candidate.alias, client)
    result = decide(analysis, observed, ctx)
    stored = last.to_dict() if last is not None else {}
    try:
        await kube.patch_status(
            PLURAL, namespace, name, {"analysis": merge_patch(stored, result.status.to_dict())}
        )
    except KubeError as exc:
        log.warning("could not write the analysis of %s/%s: %s", namespace, name, exc)
        return _conditions_of(last)
    exp.status = exp.status.model_copy(update={"analysis": result.status})
    record_gauges(namespace, name, result.status)
    hook = _conditions_of(result.status)
    hook.wake_after = _interval(analysis.interval)
    entry = history_entry(last, result, phase=progress.phase, weight=progress.weight, step=progress.step)
    if entry is not None:
        hook.history.append(entry)
    if result.acts:
        await _request(kube, namespace, name, result)
    return hook


def _interval(text: str) -> float:
    from promptalias.api.duration import parse_duration

    return parse_duration(text)


async def _request(kube: Kube, namespace: str, name: str, result: Analysis) -> None:
    """Promote or abort through the same annotation a person would set (see the module docstring)."""
    key = PROMOTE_ANNOTATION if result.decision == AnalysisDecision.PROMOTE else ABORT_ANNOTATION
    looked = result.status.last_analysis_time
    stamp = format_timestamp(looked) if looked is not None else "now"
    try:
        await asyncio.to_thread(
            kube.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": {key: stamp}}},
            field_manager=ANALYSIS_ACTOR,
            _content_type="application/merge-patch+json",
        )
    except ApiException as exc:
        # The decision stays in status; the next look (same decision) requests it again.
        log.warning("could not request %s of %s/%s: %s %s", key, namespace, name, exc.status, exc.reason)


__all__ = ["AnalysisHook", "AnalysisReason", "analysis_hook", "record_gauges", "write_gauges"]
