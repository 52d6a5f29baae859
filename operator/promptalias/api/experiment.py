"""PromptExperiment: an A/B split between a baseline PromptAlias and a candidate version.

The candidate alias (e.g. experimental-parser -> v4) receives `weight` percent of the traffic beside
the baseline alias, sticky by a routing key through a stable hash; the split travels with the
baseline's projection so clients route without a network call. With `steps`, the weight ramps up
step by step (each step sets a weight, then pauses) until it reaches `weight`. Promote moves the
baseline alias to the candidate version; abort sets the weight to 0.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Final

from pydantic import Field, StrictBool

from promptalias.api.base import KubeModel, atomic_list
from promptalias.api.cel import Rule, Validations
from promptalias.api.conditions import ReasonString
from promptalias.api.duration import Duration, duration_rule
from promptalias.api.resource import AGE_COLUMN, READY_COLUMN, PrinterColumn, Resource, StatusBase
from promptalias.api.types import AliasName, LocalObjectReference, PromptVersion

ROUTING_KEY_PATTERN: Final = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
MAX_STEPS: Final = 32
MAX_EXPERIMENT_HISTORY: Final = 100

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
