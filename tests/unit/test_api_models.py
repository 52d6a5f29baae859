"""The typed models the operator parses custom resources into."""

from __future__ import annotations

import ast
import inspect
import re
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest
from pydantic import ValidationError

from promptalias.api import (
    API_VERSION,
    GROUP,
    PLURALS,
    RESOURCES,
    VERSION,
    ClusterPromptRegistry,
    ClusterPromptRegistrySpec,
    Condition,
    ConditionStatus,
    ConditionType,
    DeletionPolicy,
    DriftPolicy,
    ExperimentPhase,
    HistoryReason,
    LabelSelector,
    PromptAlias,
    PromptAliasSpec,
    PromptExperiment,
    PromptRegistry,
    PromptRegistrySpec,
    Reason,
    RegistryKind,
    conditions,
    find_condition,
    remove_condition,
    set_condition,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

PA_BODY: dict[str, Any] = {
    "apiVersion": "promptalias.io/v1alpha1",
    "kind": "PromptAlias",
    "metadata": {
        "name": "invoice-parser-production",
        "namespace": "billing",
        "generation": 4,
        "uid": "0b5c",
        "resourceVersion": "123",
        "creationTimestamp": "2025-01-01T00:00:00Z",
        "labels": {"team": "billing"},
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {
        "registryRef": {"kind": "PromptRegistry", "name": "mlflow"},
        "prompt": "invoice-parser",
        "alias": "production",
        "version": 3,
        "deletionPolicy": "Retain",
        "driftPolicy": "Enforce",
        "policy": {"requireVersionTags": {"approved": "true"}},
        "projection": {"enabled": True},
        "historyLimit": 20,
    },
    "status": {
        "observedGeneration": 4,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Synced",
                "message": "ok",
                "lastTransitionTime": "2025-01-02T03:04:05Z",
                "observedGeneration": 4,
            }
        ],
        "resolvedVersion": 3,
        "previousVersion": 2,
        "history": [
            {
                "version": 3,
                "previousVersion": 2,
                "time": "2025-01-02T03:04:05Z",
                "reason": "Applied",
                "actor": "ci",
            }
        ],
        "someFieldFromTheFuture": 1,
    },
}


def test_constants() -> None:
    assert (GROUP, VERSION, API_VERSION) == ("promptalias.io", "v1alpha1", "promptalias.io/v1alpha1")
    assert PLURALS == {
        "PromptAlias": "promptaliases",
        "PromptRegistry": "promptregistries",
        "ClusterPromptRegistry": "clusterpromptregistries",
        "PromptExperiment": "promptexperiments",
    }
    assert [resource.SCOPE for resource in RESOURCES] == ["Namespaced", "Namespaced", "Cluster", "Namespaced"]


def test_from_body_types_spec_status_and_metadata() -> None:
    alias = PromptAlias.from_body(PA_BODY)
    assert alias.name == "invoice-parser-production"
    assert alias.namespace == "billing"
    assert alias.generation == 4
    assert alias.metadata.labels == {"team": "billing"}
    spec = alias.spec
    assert spec.registry_ref.kind is RegistryKind.PROMPT_REGISTRY
    assert spec.version == 3
    assert spec.deletion_policy is DeletionPolicy.RETAIN
    assert spec.drift_policy is DriftPolicy.ENFORCE
    assert spec.policy is not None
    assert spec.policy.require_version_tags == {"approved": "true"}
    assert spec.uri == "prompts:/invoice-parser@production"
    assert not spec.follows_mlflow
    status = alias.status
    ready = status.condition(ConditionType.READY)
    assert ready is not None
    assert ready.status is ConditionStatus.TRUE
    assert ready.last_transition_time == NOW
    assert status.history[0].reason is HistoryReason.APPLIED
    assert status.condition(ConditionType.STALLED) is None


def test_from_body_accepts_read_only_nested_mappings_like_kopf() -> None:
    def freeze(value: Any) -> Any:
        if isinstance(value, dict):
            return MappingProxyType({key: freeze(item) for key, item in value.items()})
        if isinstance(value, list):
            return tuple(freeze(item) for item in value)
        return value

    assert PromptAlias.from_body(freeze(PA_BODY)) == PromptAlias.from_body(PA_BODY)


def test_from_body_applies_the_schema_defaults_to_a_minimal_object() -> None:
    alias = PromptAlias.from_body(
        {
            "spec": {"registryRef": {"name": "mlflow"}, "prompt": "p", "alias": "prod"},
            "metadata": {"name": "x"},
        }
    )
    assert alias.kind == "PromptAlias"
    assert alias.api_version == API_VERSION
    assert alias.spec.follows_mlflow
    assert alias.spec.projection.enabled
    assert alias.spec.history_limit == 20
    assert alias.status.conditions == []
    assert alias.status.history == []


def test_from_body_refuses_another_kind() -> None:
    body = {**PA_BODY, "kind": "PromptRegistry"}
    with pytest.raises(ValidationError, match=re.escape("expected promptalias.io/v1alpha1 PromptAlias")):
        PromptAlias.from_body(body)
    with pytest.raises(ValidationError, match=re.escape("expected promptalias.io/v1alpha1 PromptAlias")):
        PromptAlias.from_body({**PA_BODY, "apiVersion": "promptalias.io/v1"})


def test_to_dict_is_the_wire_form() -> None:
    alias = PromptAlias.from_body(PA_BODY)
    wire = alias.spec.to_dict()
    assert wire == PA_BODY["spec"]
    status = alias.status.to_dict()
    assert status["conditions"][0]["lastTransitionTime"] == "2025-01-02T03:04:05Z"
    assert "someFieldFromTheFuture" not in status
    assert PromptAlias.from_body(alias.to_dict()) == alias


def test_models_accept_snake_case_in_python() -> None:
    spec = PromptAliasSpec(
        registry_ref={"name": "mlflow"},
        prompt="invoice-parser",
        alias="production",
        version=3,
        drift_policy=DriftPolicy.REPORT,
    )
    assert spec.to_dict()["driftPolicy"] == "Report"
    assert spec.to_dict()["registryRef"] == {"kind": "PromptRegistry", "name": "mlflow"}


@pytest.mark.parametrize(
    "alias", ["production", "staging-eu", "canary_2", "latest-stable", "v1beta", "v", "x3"]
)
def test_valid_aliases(alias: str) -> None:
    PromptAliasSpec.model_validate({"registryRef": {"name": "r"}, "prompt": "p", "alias": alias})


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ("latest", "reserved by MLflow"),
        ("Latest", "reserved by MLflow"),
        ("v1", "version-like"),
        ("V12", "version-like"),
        ("42", "version-like"),
        ("prod.v2", "should match pattern"),
        ("prod uction", "should match pattern"),
        ("produção", "should match pattern"),
        ("", "at least 1 character"),
    ],
)
def test_invalid_aliases(alias: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PromptAliasSpec.model_validate({"registryRef": {"name": "r"}, "prompt": "p", "alias": alias})


@pytest.mark.parametrize("prompt", ["invoice-parser", "invoice_parser.v2", "a", "a.", "a..b", "x" * 200])
def test_valid_prompt_names(prompt: str) -> None:
    PromptAliasSpec.model_validate({"registryRef": {"name": "r"}, "prompt": prompt, "alias": "prod"})


@pytest.mark.parametrize("prompt", [".", "..", "..x", ".hidden", "a/b", "a:b", "a b", "", "x" * 257])
def test_invalid_prompt_names(prompt: str) -> None:
    with pytest.raises(ValidationError):
        PromptAliasSpec.model_validate({"registryRef": {"name": "r"}, "prompt": prompt, "alias": "prod"})


def test_prompt_and_alias_must_fit_a_configmap_key() -> None:
    PromptAliasSpec.model_validate({"registryRef": {"name": "r"}, "prompt": "p" * 200, "alias": "a" * 47})
    with pytest.raises(ValidationError, match="at most 247 characters"):
        PromptAliasSpec.model_validate({"registryRef": {"name": "r"}, "prompt": "p" * 200, "alias": "a" * 48})


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://mlflow", "must be an http:// or https:// URL"),
        ("mlflow:5000", "must be an http:// or https:// URL"),
        ("https://u:p@mlflow", "must not contain credentials"),
        ("http://", "must name a host"),
        ("http://ml flow", "must name a host"),
    ],
)
def test_invalid_tracking_uris(uri: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PromptRegistrySpec.model_validate({"trackingUri": uri})


def test_registry_defaults_and_durations() -> None:
    spec = PromptRegistrySpec.model_validate(
        {"trackingUri": "https://mlflow.example.com/x", "auth": {"secretRef": {"name": "creds"}}}
    )
    assert (spec.timeout, spec.refresh_interval) == ("5s", "60s")
    assert spec.auth is not None
    assert (spec.auth.secret_ref.token_key, spec.auth.secret_ref.username_key) == ("token", "username")
    assert spec.auth.secret_ref.password_key == "password"
    assert spec.secret_namespaces() == [None]


def test_namespaced_registry_refuses_secret_namespaces_and_cluster_registry_requires_them() -> None:
    body = {"trackingUri": "https://m", "auth": {"secretRef": {"name": "creds", "namespace": "mlflow"}}}
    with pytest.raises(ValidationError, match="only allowed in a ClusterPromptRegistry"):
        PromptRegistrySpec.model_validate(body)
    assert ClusterPromptRegistrySpec.model_validate(body).secret_namespaces() == ["mlflow"]
    with pytest.raises(ValidationError, match=re.escape("tls.caSecretRef.namespace is required")):
        ClusterPromptRegistrySpec.model_validate(
            {"trackingUri": "https://m", "tls": {"caSecretRef": {"name": "ca"}}}
        )


def test_cluster_registry_namespace_conditions() -> None:
    open_registry = ClusterPromptRegistrySpec.model_validate({"trackingUri": "http://m"})
    assert open_registry.allows_namespace("anything", {})
    spec = ClusterPromptRegistrySpec.model_validate(
        {
            "trackingUri": "http://m",
            "conditions": [
                {"namespaces": ["billing"]},
                {
                    "namespaceSelector": {
                        "matchLabels": {"shared": "yes"},
                        "matchExpressions": [{"key": "sandbox", "operator": "DoesNotExist"}],
                    }
                },
            ],
        }
    )
    assert spec.allows_namespace("billing", {})
    assert spec.allows_namespace("search", {"shared": "yes"})
    assert not spec.allows_namespace("search", {"shared": "yes", "sandbox": "1"})
    assert not spec.allows_namespace("search", {"shared": "no"})


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ],
)
def test_label_selector(selector: dict[str, Any], labels: dict[str, str], matches: bool) -> None:
    assert LabelSelector.model_validate(selector).matches(labels) is matches


def test_resource_kinds_parse_their_bases() -> None:
    registry = PromptRegistry.from_body(
        {"metadata": {"name": "mlflow"}, "spec": {"trackingUri": "http://m:5000"}}
    )
    assert registry.status.server_version is None
    cluster = ClusterPromptRegistry.from_body(
        {"metadata": {"name": "m"}, "spec": {"trackingUri": "http://m"}}
    )
    assert cluster.spec.conditions is None
    experiment = PromptExperiment.from_body(
        {
            "metadata": {"name": "ab"},
            "spec": {"baseline": {"name": "pa"}, "candidate": {"alias": "exp", "version": 4}, "weight": 10},
            "status": {"phase": "Progressing", "currentWeight": 10},
        }
    )
    assert experiment.spec.routing_key == "user"
    assert experiment.status.phase is ExperimentPhase.PROGRESSING


def condition(type_: str, status: str, reason: str = "Synced", at: datetime = NOW) -> Condition:
    return Condition.model_validate(
        {"type": type_, "status": status, "reason": reason, "message": "", "lastTransitionTime": at}
    )


def test_set_condition_keeps_transition_time_while_status_holds() -> None:
    later = NOW + timedelta(minutes=5)
    first = [condition("Ready", "True", at=NOW), condition("Drifted", "False", at=NOW)]
    same = set_condition(first, condition("Ready", "True", reason="Synced", at=later))
    assert same[0].last_transition_time == NOW
    assert [item.type for item in same] == ["Ready", "Drifted"]
    flipped = set_condition(first, condition("Ready", "False", reason=Reason.REGISTRY_UNAVAILABLE, at=later))
    assert flipped[0].last_transition_time == later
    assert flipped[0].reason == "RegistryUnavailable"
    assert first[0].status is ConditionStatus.TRUE  # input untouched
    added = set_condition(first, condition("Stalled", "True", reason=Reason.CONFLICT))
    assert [item.type for item in added] == ["Ready", "Drifted", "Stalled"]
    assert find_condition(added, "Stalled") is not None
    assert [item.type for item in remove_condition(added, "Drifted")] == ["Ready", "Stalled"]


def test_condition_vocabulary() -> None:
    assert {member.value for member in ConditionType} == {"Ready", "Reconciling", "Stalled", "Drifted"}
    expected_reasons = {
        "Synced",
        "Progressing",
        "VersionNotFound",
        "PolicyViolation",
        "Conflict",
        "OwnedElsewhere",
        "InvalidRegistry",
        "RegistryUnavailable",
        "RegistryNotReady",
        "AliasNotFound",
        "ProjectionTooLarge",
        "Deleting",
    }
    assert expected_reasons <= {member.value for member in Reason}
    assert {member.value for member in HistoryReason} == {
        "Applied",
        "DriftCorrected",
        "Rollback",
        "Observed",
        "Adopted",
    }
    assert {member.value for member in ExperimentPhase} == {
        "Progressing",
        "Paused",
        "Promoted",
        "Aborted",
        "Completed",
    }


def test_condition_refuses_a_malformed_reason() -> None:
    with pytest.raises(ValidationError):
        condition("Ready", "True", reason="not a reason")


@pytest.mark.parametrize("enum_name", ["ConditionType", "Reason"])
def test_every_condition_type_and_reason_has_a_docstring(enum_name: str) -> None:
    source = ast.parse(inspect.getsource(conditions))
    (enum_class,) = [
        node for node in source.body if isinstance(node, ast.ClassDef) and node.name == enum_name
    ]
    body = enum_class.body
    undocumented = [
        statement.targets[0].id  # type: ignore[attr-defined]
        for index, statement in enumerate(body)
        if isinstance(statement, ast.Assign)
        and not (
            index + 1 < len(body)
            and isinstance(body[index + 1], ast.Expr)
            and isinstance(body[index + 1].value, ast.Constant)  # type: ignore[attr-defined]
        )
    ]
    assert undocumented == []
