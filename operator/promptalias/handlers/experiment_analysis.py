"""The automatic analysis of a PromptExperiment (spec.analysis), run inside the experiment pass.

Every `interval` (timed from status.analysis.lastAnalysisTime, so restarts neither skip nor repeat a
look) it reads each metric for both arms — Prometheus instant queries, MLflow trace feedback from the
baseline's registry — decides with reconcile/analysis.py (pure), writes status.analysis, and acts
the way a person would: a promotion or abort is the `promptalias.io/promote` / `promptalias.io/abort`
annotation, set with the field manager `promptalias-analysis`, so it takes the same path as
`promptalias experiment promote` (GitOps baselines get the Git change reported) and the history
names the analysis as the actor. The experiment pass calls `analysis_hook` and applies the returned
`AnalysisHook` (reconcile/analysis_hook.py) to its outcome (conditions) and delay.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final

from promptalias.api.duration import parse_duration
from promptalias.api.experiment import AnalysisDecision, AnalysisStatus, PromptExperiment
from promptalias.kube import Kube, KubeError
from promptalias.prometheus import Sample, TextWriter
from promptalias.reconcile.analysis import ANALYSIS_ACTOR, Analysis, decide, due_in
from promptalias.reconcile.analysis_hook import (
    AnalysisHook,
    after_look,
    analysing,
    conditions_of,
    look_context,
)
from promptalias.reconcile.experiment import Baseline, Progress
from promptalias.reconcile.status_patch import merge_patch
from promptalias.reconcile.timestamps import format_timestamp
from promptalias.registry import MlflowRegistry
from promptalias.sources.observe import observe
from promptalias.vocabulary import ABORT_ANNOTATION, PROMOTE_ANNOTATION

log = logging.getLogger(__name__)

PLURAL: Final = PromptExperiment.PLURAL


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
    if analysis is None or not analysing(progress):
        return AnalysisHook()
    last = exp.status.analysis
    due = due_in(analysis, last, now)
    if due > 0:
        hook = conditions_of(last)
        hook.wake_after = due
        return hook
    ctx = look_context(exp, progress, baseline, now)
    observed = await observe(analysis.metrics, ctx, baseline, exp.spec.candidate.alias, client)
    result = decide(analysis, observed, ctx)
    stored = last.to_dict() if last is not None else {}
    try:
        await kube.patch_status(
            PLURAL, namespace, name, {"analysis": merge_patch(stored, result.status.to_dict())}
        )
    except KubeError as exc:
        log.warning("could not write the analysis of %s/%s: %s", namespace, name, exc)
        return conditions_of(last)
    exp.status = exp.status.model_copy(update={"analysis": result.status})
    record_gauges(namespace, name, result.status)
    hook = after_look(last, result, progress, interval_s=parse_duration(analysis.interval))
    if result.acts:
        await _request(kube, namespace, name, result)
    return hook


async def _request(kube: Kube, namespace: str, name: str, result: Analysis) -> None:
    """Promote or abort through the same annotation a person would set (see the module docstring)."""
    key = PROMOTE_ANNOTATION if result.decision == AnalysisDecision.PROMOTE else ABORT_ANNOTATION
    looked = result.status.last_analysis_time
    stamp = format_timestamp(looked) if looked is not None else "now"
    try:
        await kube.patch_custom(
            PLURAL, namespace, name, {"metadata": {"annotations": {key: stamp}}}, field_manager=ANALYSIS_ACTOR
        )
    except KubeError as exc:
        # The decision stays in status; the next look (same decision) requests it again.
        log.warning("could not request %s of %s/%s: %s", key, namespace, name, exc)


__all__ = ["analysis_hook", "record_gauges", "write_gauges"]
