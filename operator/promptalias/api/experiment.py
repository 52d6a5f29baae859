"""PromptExperiment: an A/B split between a baseline PromptAlias and a candidate version.

The candidate alias (e.g. experimental-parser -> v4) receives `weight` percent of the traffic beside
the baseline alias, sticky by a routing key through a stable hash; the split travels with the
baseline's projection so clients route without a network call. With `steps`, the weight ramps up
step by step (each step sets a weight, then pauses) until it reaches `weight`. Promote moves the
baseline alias to the candidate version; abort sets the weight to 0.

Over 400 lines on purpose: the whole PromptExperiment schema (models, CEL rules, defaults) is one
CRD, generated from here; the alias and registry schemas have modules of their own.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Final

from pydantic import Field, StrictBool

from promptalias.api.base import KubeModel, atomic_list, map_list
from promptalias.api.cel import Rule, Validations
from promptalias.api.conditions import ReasonString
from promptalias.api.duration import Duration, duration_rule, parse_duration
from promptalias.api.resource import AGE_COLUMN, READY_COLUMN, PrinterColumn, Resource, StatusBase
from promptalias.api.types import AliasName, LocalObjectReference, PromptVersion

ROUTING_KEY_PATTERN: Final = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
MAX_STEPS: Final = 32
MAX_EXPERIMENT_HISTORY: Final = 100
MAX_METRICS: Final = 8
DEFAULT_QUERY_TIMEOUT_S: Final = 10.0
METRIC_NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$"
QUERY_MAX_LENGTH: Final = 4096
PROMETHEUS_ADDRESS_PATTERN: Final = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"

Weight = Annotated[int, Field(strict=True, ge=0, le=100)]
"""A share of the traffic in percent (0..100)."""


class ExperimentPhase(StrEnum):
    """Where an experiment stands."""

    PROGRESSING = "Progressing"
    """The candidate receives traffic and the steps (if any) are advancing."""
    PAUSED = "Paused"
    """Suspended, or waiting at a step without a pause duration until resumed."""
    PROMOTED = "Promoted"
    """The baseline alias was moved to the candidate version."""
    ABORTED = "Aborted"
    """The candidate weight was set to 0 and the experiment stopped."""
    COMPLETED = "Completed"
    """The final weight was reached; the split stays until promoted or aborted."""


class Candidate(KubeModel):
    """The candidate: an alias of the baseline's prompt, set to a version."""

    alias: AliasName
    """The candidate alias, e.g. experimental-parser (same MLflow rules as any alias)."""
    version: PromptVersion
    """The prompt version the candidate alias points at."""


class ExperimentStep(KubeModel):
    """One step of the ramp: set the candidate weight, then pause."""

    weight: Weight
    """Candidate weight (percent) during this step."""
    pause: (
        Annotated[
            Duration,
            Validations(
                duration_rule(
                    "duration(self) >= duration('0s')",
                    lambda seconds: seconds >= 0,
                    "pause must not be negative",
                )
            ),
        ]
        | None
    ) = None
    """How long to stay at this step, e.g. 10m; omitted: wait until resumed."""


# ---- spec.analysis --------------------------------------------------------------------------------


class MetricRole(StrEnum):
    """What a metric decides."""

    SUCCESS = "Success"
    """The candidate must improve it (a sequential test); a significant improvement promotes."""
    GUARD = "Guard"
    """It must not get worse beyond `threshold`; a breach aborts at once."""


class Direction(StrEnum):
    """Which way is better for a metric."""

    HIGHER = "Higher"
    LOWER = "Lower"


class ThresholdType(StrEnum):
    """How a guard's threshold compares the candidate with the baseline."""

    RELATIVE = "Relative"
    """candidate / baseline - 1 (0.1: at most 10% worse than the baseline)."""
    ABSOLUTE = "Absolute"
    """candidate - baseline (0.02: at most 2 points more errors); use it when the baseline can be 0."""


class Statistic(StrEnum):
    """What a Prometheus metric's queries measure per arm."""

    RATE = "Rate"
    """`value` counts the events (e.g. errors) among `count` trials: rate = value / count."""
    MEAN = "Mean"
    """`value` is the sum of `count` observations (a histogram's _sum); `sumOfSquares` gives the
    variance."""
    VALUE = "Value"
    """`value` is a statistic itself (e.g. a p95 from histogram_quantile): guards only, compared with
    the threshold once both arms have `minSamples` (`count`), no confidence interval."""


class FeedbackAggregation(StrEnum):
    """How MLflow feedback values of one name are combined per prompt version."""

    MEAN = "Mean"
    """The mean of the numeric values (true/false count as 1/0), e.g. a 1-5 rating."""
    RATE = "Rate"
    """The share of positive values (true, "yes", or a number > 0), e.g. thumbs up."""


class InconclusivePolicy(StrEnum):
    """What happens at `maxDuration` when nothing was decided."""

    HOLD = "Hold"
    """Stop analysing; the split stays until a person promotes or aborts."""
    ABORT = "Abort"
    PROMOTE = "Promote"
    """Promote unless a guard leans the wrong way (no significant improvement needed)."""


Query = Annotated[str, Field(min_length=1, max_length=QUERY_MAX_LENGTH)]
"""A PromQL template; {{arm}}, {{version}}, {{prompt}}, {{alias}} and {{window}} are replaced."""


class PrometheusSource(KubeModel):
    """Per-arm numbers from Prometheus instant queries (each must return one sample)."""

    address: Annotated[str, Field(max_length=2048, pattern=PROMETHEUS_ADDRESS_PATTERN)] | None = None
    """Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090; omitted: the
    operator's --prometheus-url (env PROMPTALIAS_PROMETHEUS_URL)."""
    statistic: Statistic | None = None
    """Rate (default), Mean or Value: what `value` measures."""
    count: Query
    """Number of trials/observations of the arm, e.g.
    sum(increase(app_requests_total{prompt_version="{{version}}"}[{{window}}]))."""
    value: Query
    """Events (Rate), sum (Mean) or the statistic (Value) of the arm."""
    sum_of_squares: Query | None = None
    """Mean only: the sum of squared observations, for the variance."""
    timeout: (
        Annotated[
            Duration,
            Validations(
                duration_rule(
                    "duration(self) > duration('0s') && duration(self) <= duration('60s')",
                    lambda seconds: 0 < seconds <= 60,
                    "timeout must be more than 0s and at most 60s",
                )
            ),
        ]
        | None
    ) = None
    """How long one query may take (default 10s)."""

    @property
    def kind(self) -> Statistic:
        return self.statistic or Statistic.RATE

    @property
    def timeout_s(self) -> float:
        return parse_duration(self.timeout) if self.timeout else DEFAULT_QUERY_TIMEOUT_S


class MlflowFeedbackSource(KubeModel):
    """Per-arm feedback from the MLflow traces that name the arm's prompt version (assessments
    logged with mlflow.log_feedback by users or LLM judges), read from the baseline's registry."""

    experiment: Annotated[str, Field(min_length=1, max_length=500)]
    """The MLflow experiment (name) the app logs its traces to (mlflow.set_experiment)."""
    name: Annotated[str, Field(min_length=1, max_length=256)]
    """The assessment name, e.g. user_rating or correctness."""
    aggregation: FeedbackAggregation | None = None
    """Mean of the values (default), or the Rate of positive ones."""

    @property
    def kind(self) -> FeedbackAggregation:
        return self.aggregation or FeedbackAggregation.MEAN


class AnalysisMetric(KubeModel):
    """One metric compared between the candidate and the baseline."""

    __cel__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule="has(self.prometheus) != has(self.mlflowFeedback)",
            message="each metric needs exactly one source: prometheus or mlflowFeedback",
            check=lambda m: (m.prometheus is None) != (m.mlflow_feedback is None),
        ),
        Rule(
            rule="self.role != 'Guard' || has(self.threshold)",
            message="a Guard metric needs a threshold (how much worse than the baseline is tolerated)",
            field_path=".threshold",
            check=lambda m: m.role != MetricRole.GUARD or m.threshold is not None,
        ),
        Rule(
            rule="self.role != 'Success' || !has(self.threshold)",
            message="threshold applies to Guard metrics; a Success metric uses minimumEffect",
            field_path=".threshold",
            check=lambda m: m.role != MetricRole.SUCCESS or m.threshold is None,
        ),
        Rule(
            rule="self.role != 'Guard' || !has(self.minimumEffect)",
            message="minimumEffect applies to Success metrics; a Guard metric uses threshold",
            field_path=".minimumEffect",
            check=lambda m: m.role != MetricRole.GUARD or m.minimum_effect is None,
        ),
        Rule(
            rule=(
                "!has(self.prometheus) || !has(self.prometheus.statistic) || "
                "self.prometheus.statistic != 'Mean' || has(self.prometheus.sumOfSquares)"
            ),
            message="statistic Mean needs prometheus.sumOfSquares (the variance of the observations)",
            field_path=".prometheus.sumOfSquares",
            check=lambda m: (
                m.prometheus is None
                or m.prometheus.statistic != Statistic.MEAN
                or m.prometheus.sum_of_squares is not None
            ),
        ),
        Rule(
            rule=(
                "self.role != 'Success' || !has(self.prometheus) || !has(self.prometheus.statistic) || "
                "self.prometheus.statistic != 'Value'"
            ),
            message="statistic Value has no confidence interval: use it for Guard metrics only",
            field_path=".prometheus.statistic",
            check=lambda m: (
                m.role != MetricRole.SUCCESS
                or m.prometheus is None
                or m.prometheus.statistic != Statistic.VALUE
            ),
        ),
    )

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=METRIC_NAME_PATTERN)]
    """A short name shown in status and Events, e.g. error-rate."""
    role: MetricRole
    """Success (must improve) or Guard (must not get worse beyond threshold)."""
    direction: Direction
    """Which way is better: Higher (ratings) or Lower (errors, latency, cost)."""
    minimum_effect: Annotated[float, Field(ge=0.0001, le=10)] | None = None
    """Success: the smallest relative improvement worth detecting (0.05: 5%); with alpha and power it
    tunes the sequential test. Default 0.05."""
    threshold: Annotated[float, Field(ge=0)] | None = None
    """Guard: how much worse the candidate may be (see thresholdType); beyond it, with confidence
    1 - alpha, the experiment aborts."""
    threshold_type: ThresholdType | None = None
    """Relative (fraction of the baseline; the default) or Absolute (in the metric's units)."""
    prometheus: PrometheusSource | None = None
    mlflow_feedback: MlflowFeedbackSource | None = None


def _duration_positive(name: str) -> Validations:
    return Validations(
        duration_rule(
            "duration(self) > duration('0s')", lambda seconds: seconds > 0, f"{name} must be more than 0s"
        )
    )


class ExperimentAnalysis(KubeModel):
    """Automatic analysis: every `interval` the metrics of both arms are compared; a significant
    improvement of the Success metric promotes, a breached Guard aborts (docs/experiments.md)."""

    __cel__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule="self.metrics.filter(m, m.role == 'Success').size() <= 1",
            message="at most one metric may have role Success (add the others as Guards)",
            field_path=".metrics",
            check=lambda a: sum(m.role == MetricRole.SUCCESS for m in a.metrics) <= 1,
        ),
    )

    interval: Annotated[Duration, _duration_positive("interval")] = "1m"
    """How often to analyse, e.g. 1m."""
    min_samples: Annotated[int, Field(strict=True, ge=1)] = 100
    """Samples each arm needs before any decision; below it the analysis is Pending (never a failure)."""
    max_duration: Annotated[Duration, _duration_positive("maxDuration")] | None = None
    """How long the experiment may run without a decision; then onInconclusive applies."""
    on_inconclusive: InconclusivePolicy = InconclusivePolicy.HOLD
    """Hold, Abort or Promote at maxDuration."""
    dry_run: StrictBool = False
    """Analyse and report (status, Events), never promote or abort."""
    alpha: Annotated[float, Field(ge=0.0001, le=0.5)] = 0.05
    """Error rate of the decisions over the whole experiment, at every look."""
    power: Annotated[float, Field(ge=0.5, le=0.9999)] = 0.8
    """Power the sequential test is tuned for at minimumEffect."""
    sample_ratio_alpha: Annotated[float, Field(ge=0, le=0.5)] = 0.001
    """A chi-square test of the arm counts against the weight below this p-value holds the experiment
    (a routing bug); 0 turns the check off."""
    metrics: Annotated[
        list[AnalysisMetric], Field(min_length=1, max_length=MAX_METRICS, json_schema_extra=map_list("name"))
    ]
    """The metrics; names unique."""


class PromptExperimentSpec(KubeModel):
    """The desired A/B split."""

    __cel__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule="!has(self.steps) || self.steps.all(step, step.weight <= self.weight)",
            message="every steps[].weight must be at most spec.weight, the final weight of the candidate",
            field_path=".steps",
            check=lambda spec: all(step.weight <= spec.weight for step in spec.steps or []),
        ),
    )

    baseline: LocalObjectReference
    """The baseline PromptAlias (same namespace), e.g. the one for the production alias."""
    candidate: Candidate
    """The candidate alias and version."""
    weight: Weight
    """Percent of traffic the candidate receives (at the end of the steps, when there are steps)."""
    routing_key: Annotated[str, Field(min_length=1, max_length=63, pattern=ROUTING_KEY_PATTERN)] = "user"
    """The request attribute hashed to pick a side, so each user (tenant, ...) sticks to one side."""
    steps: (
        Annotated[
            list[ExperimentStep], Field(min_length=1, max_length=MAX_STEPS, json_schema_extra=atomic_list())
        ]
        | None
    ) = None
    """Optional ramp: weights to go through, each followed by a pause, before `weight`."""
    suspend: StrictBool = False
    """Pause the experiment where it is (the current split stays)."""
    analysis: ExperimentAnalysis | None = None
    """Optional automatic analysis that promotes or aborts on its own."""


class ExperimentHistoryEntry(KubeModel):
    """One change of the split."""

    time: datetime
    """When the change happened."""
    reason: ReasonString
    """CamelCase reason, e.g. Started, StepAdvanced, Promoted, Aborted."""
    phase: ExperimentPhase | None = None
    """The phase after the change."""
    weight: Weight | None = None
    """The candidate weight after the change."""
    step: Annotated[int, Field(strict=True, ge=0)] | None = None
    """The step index after the change."""
    actor: Annotated[str, Field(max_length=256)] | None = None
    """Who made the change, when known."""
    message: Annotated[str, Field(max_length=1024)] | None = None
    """Free-form details."""


class AnalysisDecision(StrEnum):
    """The overall outcome of one analysis."""

    PENDING = "Pending"
    """Not enough samples yet (below minSamples): keep collecting."""
    CONTINUE = "Continue"
    """Enough samples, no conclusion yet."""
    PROMOTE = "Promote"
    ABORT = "Abort"
    HOLD = "Hold"
    """The data cannot be trusted or read (source down, query error, sample-ratio mismatch), or
    maxDuration passed with onInconclusive Hold: nothing moves."""


class MetricVerdict(StrEnum):
    """What one metric says."""

    PENDING = "Pending"
    INCONCLUSIVE = "Inconclusive"
    BETTER = "Better"
    """Success: significantly better than the baseline."""
    WORSE = "Worse"
    """Success: significantly worse."""
    BREACHED = "Breached"
    """Guard: worse than the threshold with confidence 1 - alpha."""
    WITHIN = "Within"
    """Guard: within the threshold with confidence 1 - alpha."""
    ERROR = "Error"
    """The source could not be read."""


Number = float | None


class ArmAnalysis(KubeModel):
    """One arm's numbers for one metric."""

    arm: Annotated[str, Field(max_length=16)]
    """baseline or candidate."""
    version: Annotated[int, Field(strict=True, ge=1)] | None = None
    samples: Annotated[int, Field(strict=True, ge=0)]
    """Samples since the current split started."""
    value: Number = None
    """Mean, rate or value."""
    lower: Number = None
    upper: Number = None
    """Confidence sequence of the arm's mean (1 - alpha, valid at every look)."""


class MetricAnalysis(KubeModel):
    """One metric's comparison at the last analysis."""

    name: Annotated[str, Field(max_length=63)]
    role: MetricRole
    arms: Annotated[list[ArmAnalysis], Field(max_length=2, json_schema_extra=atomic_list())]
    effect: Number = None
    """Candidate vs baseline: relative (candidate / baseline - 1) or absolute, see effectType."""
    effect_type: ThresholdType | None = None
    lower: Number = None
    upper: Number = None
    """Confidence sequence of the effect (1 - alpha, valid at every look)."""
    p_value: Number = None
    """Always-valid p-value (mSPRT) for no effect."""
    verdict: MetricVerdict
    reason: Annotated[str, Field(max_length=1024)]


class SampleRatioStatus(KubeModel):
    """Arm counts seen against the configured split."""

    baseline: Annotated[int, Field(strict=True, ge=0)]
    candidate: Annotated[int, Field(strict=True, ge=0)]
    expected_share: Number = None
    observed_share: Number = None
    p_value: Number = None


class AnalysisStatus(KubeModel):
    """The last analysis: the decision and the numbers behind it."""

    last_analysis_time: datetime | None = None
    window_start: datetime | None = None
    """Samples are counted from here: when the current split (weight) took effect."""
    weight: Annotated[int, Field(strict=True, ge=0, le=100)] | None = None
    """The candidate weight the samples were taken under."""
    looks: Annotated[int, Field(strict=True, ge=0)]
    """Analyses of this experiment so far."""
    decision: AnalysisDecision
    reason: Annotated[str, Field(max_length=2048)]
    """The numbers behind the decision."""
    dry_run: StrictBool
    sample_ratio: SampleRatioStatus | None = None
    metrics: Annotated[
        list[MetricAnalysis], Field(max_length=MAX_METRICS, json_schema_extra=atomic_list())
    ] = Field(default_factory=list)


class PromptExperimentStatus(StatusBase):
    """The observed state of the experiment, written by the operator."""

    phase: ExperimentPhase | None = None
    """Progressing, Paused, Promoted, Aborted or Completed."""
    current_weight: Weight | None = None
    """The candidate weight clients use now."""
    current_step: Annotated[int, Field(strict=True, ge=0)] | None = None
    """Index of the current step in spec.steps."""
    history: Annotated[
        list[ExperimentHistoryEntry],
        Field(max_length=MAX_EXPERIMENT_HISTORY, json_schema_extra=atomic_list()),
    ] = Field(default_factory=list)
    """Changes of the split, oldest first."""
    analysis: AnalysisStatus | None = None
    """The last automatic analysis (spec.analysis)."""


class PromptExperiment(Resource):
    """PromptExperiment splits traffic between a baseline PromptAlias and a candidate prompt version."""

    KIND: ClassVar[str] = "PromptExperiment"
    PLURAL: ClassVar[str] = "promptexperiments"
    SINGULAR: ClassVar[str] = "promptexperiment"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("pexp",)
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Baseline", "string", ".spec.baseline.name", "Baseline PromptAlias"),
        PrinterColumn("Candidate", "string", ".spec.candidate.alias", "Candidate alias"),
        PrinterColumn("Version", "integer", ".spec.candidate.version", "Candidate version"),
        PrinterColumn("Weight", "integer", ".status.currentWeight", "Current candidate weight (percent)"),
        PrinterColumn("Phase", "string", ".status.phase", "Phase of the experiment"),
        READY_COLUMN,
        AGE_COLUMN,
    )
    SELECTABLE_FIELDS: ClassVar[tuple[str, ...]] = (".spec.baseline.name",)

    spec: PromptExperimentSpec
    status: PromptExperimentStatus = Field(default_factory=PromptExperimentStatus)
