"""The inputs of an experiment's analysis and the verdict of one metric (pure, table-tested).

`judge_metric` compares one metric's numbers of the two arms (`MetricData`, read by
sources/observe.py) under the current split (`Context`): the arms' confidence sequences, the effect
of the candidate with its always-valid confidence sequence (reconcile/stats.py) and the verdict —
Pending below minSamples, Better/Worse for the Success metric, Breached/Within for a Guard.
reconcile/analysis.py combines the verdicts of all metrics into the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from promptalias.api.experiment import (
    AnalysisMetric,
    ArmAnalysis,
    Direction,
    MetricAnalysis,
    MetricRole,
    MetricVerdict,
    Statistic,
    ThresholdType,
)
from promptalias.reconcile.stats import (
    DEFAULT_PLANNING_EFFECT,
    Effect,
    EffectScale,
    Summary,
    confidence_sequence,
    effect,
    mean_interval,
    mixture_variance,
)

DEFAULT_ABSOLUTE_PLANNING: Final = 0.01


@dataclass(frozen=True)
class ArmData:
    """One arm's numbers for one metric, over the current window."""

    n: int
    """Samples: trials (Rate), observations (Mean), feedback values (MLflow), count (Value)."""
    summary: Summary | None = None
    """Rate/Mean: sufficient statistics; None for a Value metric."""
    value: float | None = None
    """Value metrics: the statistic itself."""
    exposures: int | None = None
    """Requests/traces the clients routed to this arm (for the sample-ratio check); None: unknown."""


@dataclass(frozen=True)
class MetricData:
    baseline: ArmData
    candidate: ArmData
    note: str | None = None
    """Why there is no data yet (e.g. the MLflow experiment does not exist yet), for the reason."""


@dataclass(frozen=True)
class SourceFailure:
    """A metric's source could not be read."""

    message: str
    permanent: bool
    """True: the query/configuration is wrong (Stalled until the spec changes); False: the source
    is down or slow (Reconciling, retried)."""


Observation = MetricData | SourceFailure


@dataclass(frozen=True)
class Context:
    """Where the experiment stands, for the analysis."""

    now: datetime
    started: datetime
    """When the experiment started (maxDuration counts from here)."""
    window_start: datetime
    """When the current split took effect (samples count from here)."""
    weight: int
    """The candidate weight (percent) of the current split."""
    splits: int = 1
    """How many different splits the ramp goes through (steps + the final weight)."""
    baseline_version: int | None = None
    candidate_version: int | None = None
    looks: int = 0
    """Analyses done so far (this one is looks + 1)."""


# ---- one metric -----------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def _num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _effect_text(value: float, scale: EffectScale) -> str:
    return _pct(value) if scale == EffectScale.RELATIVE else f"{value:+.4g}"


def _arm_value(arm: ArmData) -> float | None:
    if arm.summary is not None:
        return arm.summary.mean if arm.summary.n else None
    return arm.value


def _planning_variance(metric: AnalysisMetric, alpha: float, power: float) -> float:
    if metric.role == MetricRole.SUCCESS:
        planned = metric.minimum_effect or DEFAULT_PLANNING_EFFECT
    elif metric.threshold:
        planned = metric.threshold
    else:
        planned = (
            DEFAULT_PLANNING_EFFECT
            if metric.threshold_type != ThresholdType.ABSOLUTE
            else DEFAULT_ABSOLUTE_PLANNING
        )
    return mixture_variance(alpha, power, planned)


def _scale(metric: AnalysisMetric) -> EffectScale:
    if metric.role == MetricRole.GUARD and metric.threshold_type == ThresholdType.ABSOLUTE:
        return EffectScale.ABSOLUTE
    return EffectScale.RELATIVE


def _is_value(metric: AnalysisMetric) -> bool:
    return metric.prometheus is not None and metric.prometheus.kind == Statistic.VALUE


@dataclass(frozen=True)
class Judged:
    status: MetricAnalysis
    enough: bool
    leaning_bad: bool = False  # a Guard whose estimate is beyond its threshold (not yet significant)


def judge_metric(
    metric: AnalysisMetric,
    data: MetricData,
    *,
    alpha: float,
    power: float,
    min_samples: int,
    ctx: Context,
) -> Judged:
    """The verdict of one metric with its numbers."""
    tau2 = _planning_variance(metric, alpha, power)
    arms = []
    for arm, version, numbers in (
        ("baseline", ctx.baseline_version, data.baseline),
        ("candidate", ctx.candidate_version, data.candidate),
    ):
        bounds = mean_interval(numbers.summary, alpha=alpha, tau2=tau2) if numbers.summary else None
        arms.append(
            ArmAnalysis(
                arm=arm,
                version=version,
                samples=max(0, numbers.n),
                value=finite(_arm_value(numbers)),
                lower=finite(bounds[0]) if bounds else None,
                upper=finite(bounds[1]) if bounds else None,
            )
        )
    counts = f"n {data.candidate.n} vs {data.baseline.n}"
    base_v, cand_v = _arm_value(data.baseline), _arm_value(data.candidate)
    values = f"candidate {_num(cand_v)} vs baseline {_num(base_v)} ({counts})"
    scale = _scale(metric)
    common = MetricAnalysis(
        name=metric.name,
        role=metric.role,
        arms=arms,
        effect_type=ThresholdType(scale.value),
        verdict=MetricVerdict.PENDING,
        reason="",
    )
    enough = min(data.baseline.n, data.candidate.n) >= min_samples
    if not enough:
        return Judged(
            _with(
                common,
                verdict=MetricVerdict.PENDING,
                reason=f"{metric.name}: {values}; waiting for {min_samples} samples per arm"
                + (f" ({data.note})" if data.note else ""),
            ),
            enough=False,
        )
    if _is_value(metric):
        return _judge_value(metric, common, base_v, cand_v, values)
    base_s, cand_s = data.baseline.summary, data.candidate.summary
    est = effect(base_s, cand_s, scale) if base_s is not None and cand_s is not None else None
    if est is None:
        return Judged(
            _with(
                common,
                verdict=MetricVerdict.INCONCLUSIVE,
                reason=f"{metric.name}: {values}; a relative effect needs a baseline mean other than 0",
            ),
            enough=True,
        )
    return _judge_interval(metric, common, est, values, alpha=alpha, tau2=tau2)


def _with(base: MetricAnalysis, **update: object) -> MetricAnalysis:
    return base.model_copy(update=update)


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _judge_value(
    metric: AnalysisMetric, common: MetricAnalysis, base: float | None, cand: float | None, values: str
) -> Judged:
    threshold = metric.threshold or 0.0
    if base is None or cand is None or (metric.threshold_type != ThresholdType.ABSOLUTE and base == 0):
        return Judged(
            _with(
                common,
                verdict=MetricVerdict.INCONCLUSIVE,
                reason=f"{metric.name}: {values}; no value to compare",
            ),
            enough=True,
        )
    diff = cand / base - 1 if metric.threshold_type != ThresholdType.ABSOLUTE else cand - base
    harm = diff if metric.direction == Direction.LOWER else -diff
    scale = _scale(metric)
    verdict = MetricVerdict.BREACHED if harm > threshold else MetricVerdict.WITHIN
    word = "beyond" if verdict == MetricVerdict.BREACHED else "within"
    return Judged(
        _with(
            common,
            effect=diff,
            verdict=verdict,
            reason=(
                f"{metric.name}: {values}; worse by {_effect_text(harm, scale)}, {word} the threshold "
                f"{_effect_text(threshold, scale)}"
            ),
        ),
        enough=True,
    )


def _judge_interval(
    metric: AnalysisMetric,
    common: MetricAnalysis,
    est: Effect,
    values: str,
    *,
    alpha: float,
    tau2: float,
) -> Judged:
    cs = confidence_sequence(est, alpha=alpha, tau2=tau2)
    text = (
        f"{metric.name}: {values}; effect {_effect_text(cs.estimate, est.scale)}, "
        f"{(1 - alpha) * 100:.4g}% CS [{_effect_text(cs.lower, est.scale)}, "
        f"{_effect_text(cs.upper, est.scale)}]"
    )
    numbers = {
        "effect": finite(cs.estimate),
        "lower": finite(cs.lower),
        "upper": finite(cs.upper),
        "p_value": finite(cs.p_value),
    }
    higher = metric.direction == Direction.HIGHER
    if metric.role == MetricRole.SUCCESS:
        better = cs.lower > 0 if higher else cs.upper < 0
        worse = cs.upper < 0 if higher else cs.lower > 0
        if better:
            verdict, why = MetricVerdict.BETTER, "significantly better"
        elif worse:
            verdict, why = MetricVerdict.WORSE, "significantly worse"
        else:
            verdict, why = MetricVerdict.INCONCLUSIVE, "not significant yet"
        return Judged(
            _with(common, **numbers, verdict=verdict, reason=f"{text}: {why}"),
            enough=True,
        )
    threshold = metric.threshold or 0.0
    # harm: how much worse the candidate is, in the metric's bad direction
    harm_lo, harm_hi, harm = (
        (-cs.upper, -cs.lower, -cs.estimate) if higher else (cs.lower, cs.upper, cs.estimate)
    )
    limit = _effect_text(threshold, est.scale)
    if harm_lo > threshold:
        verdict, why = MetricVerdict.BREACHED, f"worse than the threshold {limit}"
    elif harm_hi < threshold:
        verdict, why = MetricVerdict.WITHIN, f"within the threshold {limit}"
    else:
        verdict, why = MetricVerdict.INCONCLUSIVE, f"not yet known to be within the threshold {limit}"
    return Judged(
        _with(common, **numbers, verdict=verdict, reason=f"{text}: {why}"),
        enough=True,
        leaning_bad=harm > threshold,
    )


__all__ = [
    "DEFAULT_ABSOLUTE_PLANNING",
    "ArmData",
    "Context",
    "Judged",
    "MetricData",
    "Observation",
    "SourceFailure",
    "finite",
    "judge_metric",
]
