"""Status conditions: the kstatus-compatible vocabulary every promptalias resource reports.

Conditions are a list merged by `type` (`x-kubernetes-list-type: map`). Each carries the
`observedGeneration` it was computed for, and `lastTransitionTime` changes only when `status` flips
(`set_condition` does that bookkeeping), as in cert-manager's pkg/api/util/conditions.go.

How the types combine (kstatus): a healthy resource has Ready=True and no Reconciling/Stalled; while
work is in flight Reconciling=True; Stalled=True only for errors that retrying cannot fix without a
change to the spec or to MLflow (the reason says which). Drifted is promptalias' own: the MLflow
alias points somewhere the resource does not say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final

from pydantic import Field

from promptalias.api.base import KubeModel
from promptalias.api.types import DNS_SUBDOMAIN, QUALIFIED_NAME

CONDITION_TYPE_PATTERN: Final = f"^({DNS_SUBDOMAIN}/)?({QUALIFIED_NAME})$"
REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

ReasonString = Annotated[str, Field(min_length=1, max_length=1024, pattern=REASON_PATTERN)]
"""A CamelCase machine-readable reason, the same format as metav1.Condition.reason."""


class ConditionType(StrEnum):
    """The condition types promptalias resources report."""

    READY = "Ready"
    """The resource is in the state its spec asks for. PromptAlias: the MLflow alias points at the
    desired version (or, when following MLflow, the resolved version is known) and the projection is
    current. Registries: the tracking server answered the last check with the configured credentials.
    Printed in the READY column."""

    RECONCILING = "Reconciling"
    """The operator is working towards the desired state (kstatus "in progress"); present only while
    True. The reason says what is pending, usually `Progressing`."""

    STALLED = "Stalled"
    """The operator cannot make progress until something changes (kstatus "failed"): a missing
    version, a policy violation, a conflict with another owner, an invalid registry, a projection too
    large. Present only while True. Transient trouble (MLflow down) never sets Stalled."""

    DRIFTED = "Drifted"
    """PromptAlias only: the alias in MLflow does not point where `spec.version` says, because
    someone moved it outside Git. With `driftPolicy: Enforce` the operator moves it back and records
    `DriftCorrected` in history; with `Report` the condition stays True until the spec or MLflow
    changes. False when the last check found the alias where it should be."""


class ConditionStatus(StrEnum):
    """The status of a condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """Why a condition has its status. Reasons are CamelCase and stable: alerts and tools match them."""

    SYNCED = "Synced"
    """Ready=True: MLflow and the projection match the spec (Drifted=False uses it too)."""

    PROGRESSING = "Progressing"
    """Reconciling=True (and Ready=Unknown/False): a change is being applied."""

    VERSION_NOT_FOUND = "VersionNotFound"
    """Stalled: `spec.version` (or an experiment's candidate version) does not exist for the prompt.
    Register the version or fix the spec."""

    POLICY_VIOLATION = "PolicyViolation"
    """Stalled: the target version lacks tags that `spec.policy.requireVersionTags` requires. Tag the
    version in MLflow (e.g. approved=true) or relax the policy."""

    CONFLICT = "Conflict"
    """Stalled: another PromptAlias in this cluster, created earlier, manages the same
    registry/prompt/alias (named in `status.owner`). This one never writes to MLflow; delete one."""

    OWNED_ELSEWHERE = "OwnedElsewhere"
    """Stalled: the ownership tag on the MLflow prompt names another cluster or resource for this
    alias (named in `status.owner`), so the operator refuses to move the alias."""

    INVALID_REGISTRY = "InvalidRegistry"
    """Stalled: the referenced registry does not exist, does not allow this namespace (a
    ClusterPromptRegistry's conditions), or its configuration (Secret, key, CA) is unusable."""

    NOT_AUTHORIZED = "NotAuthorized"
    """Stalled: the write this resource asks for (pin, rollback-to, takeover, promote) is not allowed:
    its registry grants the namespace no `writePrompts` pattern for the prompt, or another namespace
    holds the alias (docs/operator.md, Tenancy). MLflow is left unchanged."""

    REGISTRY_UNAVAILABLE = "RegistryUnavailable"
    """Ready=False, not Stalled: the tracking server did not answer in time or returned a server
    error. Retried with backoff; the last good state (and projection) is kept."""

    REGISTRY_NOT_READY = "RegistryNotReady"
    """Ready=False: the referenced registry exists but its own Ready condition is not True."""

    ALIAS_NOT_FOUND = "AliasNotFound"
    """PromptAlias following MLflow (`spec.version` omitted): the alias does not exist in MLflow yet.
    Ready=False until someone sets it; the operator never creates it in follow mode."""

    PROJECTION_TOO_LARGE = "ProjectionTooLarge"
    """Stalled: the projected ConfigMap would exceed the 1 MiB Kubernetes limit. Prompts are never
    truncated; shorten the template or set `spec.projection.enabled: false`."""

    DELETING = "Deleting"
    """Ready=False while the resource is being deleted (and, with `deletionPolicy: Delete`, the MLflow
    alias removed)."""

    DRIFT_DETECTED = "DriftDetected"
    """Drifted=True: the MLflow alias was found pointing at another version than `spec.version`."""

    CONNECTED = "Connected"
    """Registries, Ready=True: the tracking server answered; `status.serverVersion` is its version."""

    UNAUTHORIZED = "Unauthorized"
    """Registries, Ready=False: the tracking server refused the credentials (401/403)."""

    NO_NAMESPACES_ALLOWED = "NoNamespacesAllowed"
    """ClusterPromptRegistry, Ready=False: it has no `spec.conditions`, so no namespace may use it
    (the default is deny). Add conditions naming the namespaces it serves."""


class Condition(KubeModel):
    """The state of one aspect of the resource (the fields of metav1.Condition)."""

    type: Annotated[str, Field(min_length=1, max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    """Type of the condition: Ready, Reconciling, Stalled or Drifted."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: ReasonString
    """CamelCase reason for the last transition, e.g. Synced or VersionNotFound."""
    message: Annotated[str, Field(max_length=32768)]
    """Human-readable details: what happened and what to do next."""
    last_transition_time: datetime
    """When the status last changed (not when the condition was last written)."""
    observed_generation: Annotated[int, Field(strict=True, ge=0)] | None = None
    """The metadata.generation the condition was computed for."""


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of the given type, or None."""
    return next((condition for condition in conditions if condition.type == type_), None)


def set_condition(conditions: Sequence[Condition], condition: Condition) -> list[Condition]:
    """A new list with `condition` in place of the one of its type (appended when absent).

    `lastTransitionTime` is kept from the existing condition when the status is unchanged, so it
    records the flip, not the last write. The input is not modified.
    """
    existing = find_condition(conditions, condition.type)
    if existing is not None and existing.status == condition.status:
        condition = condition.model_copy(update={"last_transition_time": existing.last_transition_time})
    result = [item for item in conditions if item.type != condition.type]
    if existing is None:
        return [*result, condition]
    position = [item.type for item in conditions].index(condition.type)
    result.insert(position, condition)
    return result


def remove_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    """A new list without the condition of the given type."""
    return [item for item in conditions if item.type != type_]


MESSAGE_MAX_LENGTH: Final = 32768


def make_condition(
    type_: str, status: bool, reason: str, message: str, *, now: datetime, generation: int
) -> Condition:
    """A True/False condition for `generation`, message bounded by the schema, time in whole seconds."""
    return Condition(
        type=type_,
        status=ConditionStatus.TRUE if status else ConditionStatus.FALSE,
        reason=reason,
        message=message[:MESSAGE_MAX_LENGTH],
        last_transition_time=now.replace(microsecond=0),
        observed_generation=generation,
    )


@dataclass(frozen=True)
class KstatusOutcome:
    """How a pass ended, as its kstatus conditions say it (`kstatus_conditions`); each kind's
    `Outcome` adds the rest of what its status records."""

    ready: bool
    reason: str
    message: str
    stalled: bool = False
    reconciling: bool = False
    reconciling_reason: str | None = None  # None: Progressing


def kstatus_conditions(
    conditions: Sequence[Condition], outcome: KstatusOutcome, *, now: datetime, generation: int
) -> list[Condition]:
    """`conditions` after `outcome`: Ready always; Stalled and Reconciling present only while True
    (kstatus semantics); other types (Drifted) kept as they were."""
    result = set_condition(
        conditions,
        make_condition(
            ConditionType.READY,
            outcome.ready,
            outcome.reason,
            outcome.message,
            now=now,
            generation=generation,
        ),
    )
    for type_, active, why in (
        (ConditionType.STALLED, outcome.stalled, outcome.reason),
        (ConditionType.RECONCILING, outcome.reconciling, outcome.reconciling_reason or Reason.PROGRESSING),
    ):
        if active:
            result = set_condition(
                result, make_condition(type_, True, why, outcome.message, now=now, generation=generation)
            )
        else:
            result = remove_condition(result, type_)
    return result
