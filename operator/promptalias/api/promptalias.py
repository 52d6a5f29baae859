"""PromptAlias: one MLflow prompt alias, declared in Kubernetes.

Decisions worth knowing (the CEL messages say the same to users):

- `registryRef`, `prompt` and `alias` are immutable. Together they name the MLflow object the
  resource manages; changing one in place would silently orphan the old alias (its deletionPolicy
  never applied, its ownership tag left behind) and make conflict detection ("the older resource
  wins") compare two different objects. Delete the resource and create a new one instead.
  `version`, the policies and the projection switch stay mutable.
- `version` omitted means MLflow owns the alias (follow mode); `version: null` is the same (the
  apiserver drops nulls of optional fields), so GitOps tools see no difference.
- Aliases are MLflow's rules plus two restrictions: ASCII only (the alias is part of a ConfigMap
  key) and no plain numbers (prompts:/name/3 means version 3). prompt + alias fit the projection
  key <prompt>.<alias>.json in 253 characters.
- Every default lives in the CRD schema (never inside list items), and the models default the same
  way (an integration test compares the apiserver's defaulting with `from_body`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Final

from pydantic import Field, StrictBool

from promptalias.api.base import KubeModel, atomic_list
from promptalias.api.cel import Rule, Validations, immutable
from promptalias.api.resource import PrinterColumn, Resource, StatusBase, ready_columns
from promptalias.api.types import (
    PROMPT_AND_ALIAS_MAX_LENGTH,
    AliasName,
    ObjectName,
    PromptName,
    PromptVersion,
    TagKey,
    TagValue,
)

HISTORY_LIMIT_DEFAULT: Final = 20
HISTORY_LIMIT_MAX: Final = 100
DIGEST_PATTERN: Final = r"^sha256:[0-9a-f]{64}$"


class RegistryKind(StrEnum):
    """Which kind of registry a PromptAlias refers to."""

    PROMPT_REGISTRY = "PromptRegistry"
    CLUSTER_PROMPT_REGISTRY = "ClusterPromptRegistry"


class DeletionPolicy(StrEnum):
    """What happens to the MLflow alias when the PromptAlias is deleted."""

    RETAIN = "Retain"
    """Leave the alias in MLflow (the default: deleting YAML never breaks a running app)."""
    DELETE = "Delete"
    """Delete the alias from MLflow (only if this resource owns it)."""


class DriftPolicy(StrEnum):
    """What the operator does when the MLflow alias was moved away from `spec.version`."""

    ENFORCE = "Enforce"
    """Move it back (Git is the source of truth) and record DriftCorrected in history."""
    REPORT = "Report"
    """Only report: Drifted=True and an Event; the alias stays where it was moved."""


class HistoryReason(StrEnum):
    """Why an entry was added to `status.history`."""

    APPLIED = "Applied"
    """The operator moved the alias to `spec.version` after a spec change."""
    DRIFT_CORRECTED = "DriftCorrected"
    """The operator moved the alias back after someone moved it outside Git (driftPolicy Enforce)."""
    ROLLBACK = "Rollback"
    """A rollback (e.g. `promptalias rollback`) returned the alias to the previous version."""
    OBSERVED = "Observed"
    """Follow mode or driftPolicy Report: the operator saw the alias move in MLflow."""
    ADOPTED = "Adopted"
    """The resource took over an alias that already existed in MLflow at the desired version."""


class RegistryRef(KubeModel):
    """Which PromptRegistry (same namespace) or ClusterPromptRegistry holds the prompt."""

    kind: RegistryKind = RegistryKind.PROMPT_REGISTRY
    """PromptRegistry (in the namespace of the PromptAlias) or ClusterPromptRegistry."""
    name: ObjectName
    """Name of the registry."""


class AliasPolicy(KubeModel):
    """Guard rails on which versions the alias may point at."""

    require_version_tags: Annotated[dict[TagKey, TagValue], Field(max_length=32)] | None = None
    """Tags a version must carry (with these exact values) before the alias may point at it, e.g.
    {approved: "true"}. A version without them makes the resource Stalled with PolicyViolation."""


class ProjectionSpec(KubeModel):
    """The ConfigMap carrying the resolved prompt to pods."""

    enabled: StrictBool = True
    """Render the projection ConfigMap (one key, <prompt>.<alias>.json)."""


class PromptAliasSpec(KubeModel):
    """The desired state of one MLflow prompt alias."""

    __cel__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule=f"size(self.prompt) + size(self.alias) <= {PROMPT_AND_ALIAS_MAX_LENGTH}",
            message=(
                f"prompt and alias together may have at most {PROMPT_AND_ALIAS_MAX_LENGTH} characters, so "
                "that the projection key <prompt>.<alias>.json fits a ConfigMap key (253 characters)"
            ),
            check=lambda spec: len(spec.prompt) + len(spec.alias) <= PROMPT_AND_ALIAS_MAX_LENGTH,
        ),
    )

    registry_ref: Annotated[RegistryRef, Validations(immutable("registryRef"))]
    """The registry (MLflow tracking server) that holds the prompt. Immutable."""
    prompt: Annotated[PromptName, Validations(immutable("prompt"))]
    """The MLflow prompt name, e.g. invoice-parser. Immutable."""
    alias: Annotated[AliasName, Validations(immutable("alias"))]
    """The MLflow alias, e.g. production. Not 'latest', not version-like (v1, 3). Immutable."""
    version: PromptVersion | None = None
    """The prompt version the alias must point at: Git owns the alias. Omit it to follow MLflow: the
    operator never writes the alias, it projects and records wherever MLflow users move it."""
    deletion_policy: DeletionPolicy = DeletionPolicy.RETAIN
    """Retain (default) or Delete the MLflow alias when this resource is deleted."""
    drift_policy: DriftPolicy = DriftPolicy.ENFORCE
    """Enforce (default: move the alias back) or Report, when the alias is moved outside Git."""
    policy: AliasPolicy | None = None
    """Optional guard rails, e.g. required version tags."""
    projection: ProjectionSpec = ProjectionSpec()
    """The ConfigMap projection of the resolved prompt."""
    history_limit: Annotated[int, Field(strict=True, ge=1, le=HISTORY_LIMIT_MAX)] = HISTORY_LIMIT_DEFAULT
    """How many entries status.history keeps (1..100)."""

    @property
    def follows_mlflow(self) -> bool:
        """True when MLflow owns the alias (no `version`)."""
        return self.version is None

    @property
    def uri(self) -> str:
        """The alias URI, prompts:/<prompt>@<alias>."""
        return f"prompts:/{self.prompt}@{self.alias}"


class ObjectReference(KubeModel):
    """A reference to an object by name."""

    name: ObjectName
    """Name of the object."""


class HistoryEntry(KubeModel):
    """One move of the alias: the audit trail MLflow itself does not keep."""

    version: PromptVersion | None = None
    """The version the alias pointed at after the move; absent when the alias was deleted (e.g. an
    Observed deletion in MLflow while following it)."""
    previous_version: PromptVersion | None = None
    """The version before the move (absent when the alias was created)."""
    time: datetime
    """When the move was made or observed."""
    reason: HistoryReason
    """Applied, DriftCorrected, Rollback, Observed or Adopted."""
    actor: Annotated[str, Field(max_length=256)] | None = None
    """Who moved it, when known: the operator, a Kubernetes user, or 'mlflow' for outside moves."""
    message: Annotated[str, Field(max_length=1024)] | None = None
    """Free-form details."""


class PromptAliasStatus(StatusBase):
    """The observed state of the alias, written by the operator."""

    resolved_version: PromptVersion | None = None
    """The version the alias points at now (what clients get)."""
    previous_version: PromptVersion | None = None
    """The version before the last move: what a rollback returns to."""
    template_digest: Annotated[str, Field(max_length=71, pattern=DIGEST_PATTERN)] | None = None
    """sha256:<hex> of the resolved template, as in the projection."""
    uri: Annotated[str, Field(max_length=600)] | None = None
    """The alias URI clients use, prompts:/<prompt>@<alias>."""
    config_map_ref: ObjectReference | None = None
    """The projection ConfigMap, when projection is enabled."""
    last_sync_time: datetime | None = None
    """When the operator last confirmed MLflow and the projection match."""
    owner: Annotated[str, Field(max_length=512)] | None = None
    """When in conflict: who holds the alias (namespace/name here, or the owner tag found in MLflow)."""
    history: Annotated[
        list[HistoryEntry], Field(max_length=HISTORY_LIMIT_MAX, json_schema_extra=atomic_list())
    ] = Field(default_factory=list)
    """The newest moves of the alias, oldest first, at most spec.historyLimit entries."""
    applied_version: PromptVersion | None = None
    """Pinned mode: the spec.version the operator last carried out (MLflow matched it). A spec.version
    different from it is the user's pending change, never drift, however many passes failed."""
    pending_move: HistoryEntry | None = None
    """The move being written to MLflow, recorded before the write: a pass that restarts after a
    crash (or a timed-out write MLflow carried out) finds the alias there and records this entry."""


class PromptAlias(Resource):
    """PromptAlias declares where an MLflow prompt alias points (prompts:/<prompt>@<alias>), and
    projects the resolved prompt into a ConfigMap for running pods."""

    KIND: ClassVar[str] = "PromptAlias"
    PLURAL: ClassVar[str] = "promptaliases"
    SINGULAR: ClassVar[str] = "promptalias"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("pa",)
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = ready_columns(
        PrinterColumn("Prompt", "string", ".spec.prompt", "MLflow prompt name"),
        PrinterColumn("Alias", "string", ".spec.alias", "MLflow alias"),
        PrinterColumn("Version", "integer", ".spec.version", "Desired version (empty: follows MLflow)"),
        PrinterColumn("Resolved", "integer", ".status.resolvedVersion", "Version the alias points at now"),
    )
    SELECTABLE_FIELDS: ClassVar[tuple[str, ...]] = (".spec.prompt", ".spec.alias", ".spec.registryRef.name")

    spec: PromptAliasSpec
    status: PromptAliasStatus = Field(default_factory=PromptAliasStatus)


__all__ = [
    "AliasPolicy",
    "DeletionPolicy",
    "DriftPolicy",
    "HistoryEntry",
    "HistoryReason",
    "ObjectReference",
    "ProjectionSpec",
    "PromptAlias",
    "PromptAliasSpec",
    "PromptAliasStatus",
    "RegistryKind",
    "RegistryRef",
]
