"""The promptalias API (group promptalias.io, version v1alpha1): the single source of the CRD schema.

The pydantic models here are what the operator parses objects into (`PromptAlias.from_body(body)`)
and what `python -m promptalias.api.crdgen` turns into the CRDs in crds/. Validation the apiserver
enforces (OpenAPI bounds and CEL rules) is declared on the same fields; see `promptalias.api.cel`.
"""

from promptalias.api.base import KubeModel
from promptalias.api.cel import Rule, Validations
from promptalias.api.conditions import (
    Condition,
    ConditionStatus,
    ConditionType,
    Reason,
    find_condition,
    remove_condition,
    set_condition,
)
from promptalias.api.duration import Duration, format_duration, parse_duration
from promptalias.api.experiment import (
    Candidate,
    ExperimentHistoryEntry,
    ExperimentPhase,
    ExperimentStep,
    PromptExperiment,
    PromptExperimentSpec,
    PromptExperimentStatus,
)
from promptalias.api.promptalias import (
    AliasPolicy,
    DeletionPolicy,
    DriftPolicy,
    HistoryEntry,
    HistoryReason,
    ObjectReference,
    ProjectionSpec,
    PromptAlias,
    PromptAliasSpec,
    PromptAliasStatus,
    RegistryKind,
    RegistryRef,
)
from promptalias.api.registry import (
    AuthSecretRef,
    CASecretRef,
    ClusterPromptRegistry,
    ClusterPromptRegistrySpec,
    NamespaceCondition,
    PromptRegistry,
    PromptRegistrySpec,
    RegistryAuth,
    RegistrySpec,
    RegistryStatus,
    RegistryTLS,
    RegistryWebhook,
    WebhookSecretRef,
)
from promptalias.api.resource import ObjectMeta, Resource, StatusBase
from promptalias.api.types import (
    API_VERSION,
    GROUP,
    VERSION,
    AliasName,
    LabelSelector,
    LabelSelectorRequirement,
    LocalObjectReference,
    PromptName,
    WorkspaceName,
)

RESOURCES: tuple[type[Resource], ...] = (PromptAlias, PromptRegistry, ClusterPromptRegistry, PromptExperiment)
"""Every kind of the API."""

PLURALS: dict[str, str] = {resource.KIND: resource.PLURAL for resource in RESOURCES}
"""Kind -> plural resource name, e.g. PLURALS["PromptAlias"] == "promptaliases"."""

__all__ = [
    "API_VERSION",
    "GROUP",
    "PLURALS",
    "RESOURCES",
    "VERSION",
    "AliasName",
    "AliasPolicy",
    "AuthSecretRef",
    "CASecretRef",
    "Candidate",
    "ClusterPromptRegistry",
    "ClusterPromptRegistrySpec",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "DeletionPolicy",
    "DriftPolicy",
    "Duration",
    "ExperimentHistoryEntry",
    "ExperimentPhase",
    "ExperimentStep",
    "HistoryEntry",
    "HistoryReason",
    "KubeModel",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LocalObjectReference",
    "NamespaceCondition",
    "ObjectMeta",
    "ObjectReference",
    "ProjectionSpec",
    "PromptAlias",
    "PromptAliasSpec",
    "PromptAliasStatus",
    "PromptExperiment",
    "PromptExperimentSpec",
    "PromptExperimentStatus",
    "PromptName",
    "PromptRegistry",
    "PromptRegistrySpec",
    "Reason",
    "RegistryAuth",
    "RegistryKind",
    "RegistryRef",
    "RegistrySpec",
    "RegistryStatus",
    "RegistryTLS",
    "RegistryWebhook",
    "Resource",
    "Rule",
    "StatusBase",
    "Validations",
    "WebhookSecretRef",
    "WorkspaceName",
    "find_condition",
    "format_duration",
    "parse_duration",
    "remove_condition",
    "set_condition",
]
