"""Read an analysis' metrics for both arms: Prometheus queries and MLflow trace feedback.

Shared by the operator (handlers/experiment_analysis.py) and the CLI (`experiment analyse`), so it
imports neither kopf nor the handlers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Final

import aiohttp

from promptalias.api.experiment import AnalysisMetric, FeedbackAggregation, Statistic
from promptalias.reconcile.analysis import (
    ArmData,
    Context,
    MetricData,
    Observation,
    SourceFailure,
    window_text,
)
from promptalias.reconcile.experiment import Baseline
from promptalias.reconcile.stats import Summary
from promptalias.registry import MlflowRegistry, RegistryError, RegistryNotFound, RegistryUnavailable
from promptalias.registry.traces import experiment_id, version_feedback
from promptalias.sources.prometheus import PrometheusError, instant_query, render

PROMETHEUS_URL_ENV: Final = "PROMPTALIAS_PROMETHEUS_URL"


async def observe(
    metrics: list[AnalysisMetric],
    ctx: Context,
    baseline: Baseline,
    candidate_alias: str,
    client: MlflowRegistry,
) -> dict[str, Observation]:
    """Each metric's per-arm numbers over the current window, or why they could not be read."""
    arms = {
        "baseline": (baseline.alias, ctx.baseline_version),
        "candidate": (candidate_alias, ctx.candidate_version),
    }
    found: dict[str, Observation] = {}
    experiments: dict[str, str] = {}
    async with aiohttp.ClientSession(headers={"User-Agent": "promptalias-analysis"}) as session:
        for metric in metrics:
            try:
                if metric.prometheus is not None:
                    found[metric.name] = await _prometheus(session, metric, ctx, baseline.prompt, arms)
                else:
                    found[metric.name] = await _feedback(
                        client, metric, ctx, baseline.prompt, arms, experiments
                    )
            except PrometheusError as exc:
                found[metric.name] = SourceFailure(str(exc), permanent=exc.permanent)
            except RegistryUnavailable as exc:
                found[metric.name] = SourceFailure(f"MLflow: {exc}", permanent=False)
            except RegistryError as exc:
                found[metric.name] = SourceFailure(f"MLflow refused the trace search: {exc}", permanent=True)
    return found


async def _prometheus(
    session: aiohttp.ClientSession,
    metric: AnalysisMetric,
    ctx: Context,
    prompt: str,
    arms: Mapping[str, tuple[str, int | None]],
) -> Observation:
    source = metric.prometheus
    assert source is not None
    address = source.address or os.environ.get(PROMETHEUS_URL_ENV)
    if not address:
        return SourceFailure(
            f"no Prometheus address: set spec.analysis.metrics[{metric.name}].prometheus.address or the "
            f"operator's {PROMETHEUS_URL_ENV}",
            permanent=True,
        )
    numbers: dict[str, ArmData] = {}
    for arm, (alias, version) in arms.items():
        values = {
            "arm": arm,
            "alias": alias,
            "version": str(version or ""),
            "prompt": prompt,
            "window": window_text(ctx),
        }

        async def query(template: str, values: Mapping[str, str] = values) -> float | None:
            return await instant_query(
                session, address, render(template, values), timeout_s=source.timeout_s, at=ctx.now
            )

        count = await query(source.count)
        value = await query(source.value)
        n = max(0, round(count or 0.0))
        if source.kind == Statistic.VALUE:
            numbers[arm] = ArmData(n=n, value=value, exposures=n)
            continue
        total = max(0.0, value or 0.0)
        if source.kind == Statistic.RATE:
            summary = Summary.rate(n, min(total, float(n)))
        else:
            squares = await query(source.sum_of_squares or "")
            summary = Summary(n, value or 0.0, max(0.0, squares or 0.0))
        numbers[arm] = ArmData(n=n, summary=summary, exposures=n)
    return MetricData(baseline=numbers["baseline"], candidate=numbers["candidate"])


async def _feedback(
    client: MlflowRegistry,
    metric: AnalysisMetric,
    ctx: Context,
    prompt: str,
    arms: Mapping[str, tuple[str, int | None]],
    experiments: dict[str, str],
) -> Observation:
    source = metric.mlflow_feedback
    assert source is not None
    if source.experiment not in experiments:
        try:
            experiments[source.experiment] = await experiment_id(client, source.experiment)
        except RegistryNotFound as exc:
            # Apps create their experiment with their first trace: no experiment yet is no data yet
            # (Pending, with the reason saying which name to check), not a failure.
            empty = ArmData(n=0, summary=Summary(0, 0.0, 0.0), exposures=0)
            return MetricData(baseline=empty, candidate=empty, note=str(exc))
    numbers: dict[str, ArmData] = {}
    for arm, (_alias, version) in arms.items():
        if version is None:
            return SourceFailure(f"the {arm} version is not known yet", permanent=False)
        found = await version_feedback(
            client,
            experiment=experiments[source.experiment],
            prompt=prompt,
            version=version,
            name=source.name,
            rate=source.kind == FeedbackAggregation.RATE,
            since=ctx.window_start,
        )
        values = [v for v in found.values if math.isfinite(v)]
        numbers[arm] = ArmData(n=len(values), summary=Summary.of(values), exposures=found.traces)
    return MetricData(baseline=numbers["baseline"], candidate=numbers["candidate"])


__all__ = ["PROMETHEUS_URL_ENV", "observe"]
