"""The CRDs built from the models are structural, defaulted where intended, and carry the rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from pydantic import AnyHttpUrl, BaseModel, Field

from promptalias.api import RESOURCES, KubeModel, PromptAlias, Resource, Rule, Validations
from promptalias.api.cel import VALIDATIONS_KEY, cel_quote
from promptalias.api.schema import SchemaError, build_crd, structural_schema

CRDS = {resource.KIND: build_crd(resource) for resource in RESOURCES}


def schema_of(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(
    node: dict[str, Any], path: str = "", in_list: bool = False
) -> Iterator[tuple[str, dict[str, Any], bool]]:
    yield path, node, in_list
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}", in_list)
    if "items" in node:
        yield from walk(node["items"], f"{path}[]", True)
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}", in_list)


@pytest.mark.parametrize("kind", list(CRDS))
def test_schema_is_structural(kind: str) -> None:
    for path, node, _ in walk(schema_of(kind)):
        if path in {".apiVersion", ".kind"}:
            continue  # the standard type meta, as every CRD has it
        assert "type" in node, f"{kind}{path}: no type"
        for keyword in ("$ref", "anyOf", "allOf", "oneOf", "not", "title", "nullable", "$defs"):
            assert keyword not in node, f"{kind}{path}: {keyword}"
        assert not ("properties" in node and "additionalProperties" in node), f"{kind}{path}"
        if node["type"] == "string":
            assert "maxLength" in node or "enum" in node or "format" in node, (
                f"{kind}{path}: unbounded string"
            )
        if node["type"] == "array":
            assert "maxItems" in node, f"{kind}{path}: unbounded list"
            assert "x-kubernetes-list-type" in node, f"{kind}{path}: no list type"
        if node["type"] == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{kind}{path}: unbounded map"


@pytest.mark.parametrize("kind", list(CRDS))
def test_nothing_inside_a_list_item_is_defaulted(kind: str) -> None:
    defaulted_in_lists = [
        path for path, node, in_list in walk(schema_of(kind)) if in_list and "default" in node
    ]
    assert defaulted_in_lists == []


def defaults(kind: str) -> dict[str, Any]:
    return {path: node["default"] for path, node, _ in walk(schema_of(kind)) if "default" in node}


def test_defaults_are_exactly_the_documented_ones() -> None:
    assert defaults("PromptAlias") == {
        ".spec.registryRef.kind": "PromptRegistry",
        ".spec.deletionPolicy": "Retain",
        ".spec.driftPolicy": "Enforce",
        ".spec.projection": {"enabled": True},
        ".spec.projection.enabled": True,
        ".spec.historyLimit": 20,
    }
    registry_defaults = {
        ".spec.auth.secretRef.tokenKey": "token",
        ".spec.auth.secretRef.usernameKey": "username",
        ".spec.auth.secretRef.passwordKey": "password",
        ".spec.tls.caSecretRef.key": "ca.crt",
        ".spec.tls.insecureSkipVerify": False,
        ".spec.timeout": "5s",
        ".spec.refreshInterval": "60s",
        ".spec.webhook.enabled": True,
        ".spec.webhook.secretRef.key": "secret",
    }
    assert defaults("PromptRegistry") == registry_defaults
    assert defaults("ClusterPromptRegistry") == registry_defaults
    assert defaults("PromptExperiment") == {
        ".spec.routingKey": "user",
        ".spec.suspend": False,
        ".spec.analysis.interval": "1m",
        ".spec.analysis.minSamples": 100,
        ".spec.analysis.onInconclusive": "Hold",
        ".spec.analysis.dryRun": False,
        ".spec.analysis.alpha": 0.05,
        ".spec.analysis.power": 0.8,
        ".spec.analysis.sampleRatioAlpha": 0.001,
    }


@pytest.mark.parametrize("kind", list(CRDS))
def test_status_has_a_real_schema_and_a_subresource(kind: str) -> None:
    version = CRDS[kind]["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    status = schema_of(kind)["properties"]["status"]
    assert "x-kubernetes-preserve-unknown-fields" not in status
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]
    assert "observedGeneration" in status["properties"]
    assert schema_of(kind)["required"] == ["spec"]


def test_promptalias_crd_names_and_columns() -> None:
    crd = CRDS["PromptAlias"]
    assert crd["metadata"]["name"] == "promptaliases.promptalias.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["shortNames"] == ["pa"]
    assert crd["spec"]["names"]["categories"] == ["prompts"]
    columns = {column["name"]: column for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(columns) == ["Prompt", "Alias", "Version", "Resolved", "Ready", "Reason", "Message", "Age"]
    assert columns["Version"]["jsonPath"] == ".spec.version"
    assert columns["Resolved"]["jsonPath"] == ".status.resolvedVersion"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Age"]["type"] == "date"
    assert columns["Message"]["priority"] == 1


def test_other_crd_names() -> None:
    assert CRDS["ClusterPromptRegistry"]["spec"]["scope"] == "Cluster"
    assert CRDS["PromptExperiment"]["spec"]["names"]["shortNames"] == ["pexp"]
    for kind, crd in CRDS.items():
        assert crd["spec"]["names"]["listKind"] == f"{kind}List"
        assert crd["spec"]["versions"][0]["name"] == "v1alpha1"


def rules_at(kind: str, path: str) -> list[str]:
    for node_path, node, _ in walk(schema_of(kind)):
        if node_path == path:
            return [rule["rule"] for rule in node.get(VALIDATIONS_KEY, [])]
    raise AssertionError(f"no {path} in {kind}")


def test_immutable_identity_fields() -> None:
    for field in (".spec.prompt", ".spec.alias", ".spec.registryRef"):
        assert "self == oldSelf" in rules_at("PromptAlias", field)
    assert "self == oldSelf" not in rules_at("PromptAlias", ".spec.version")
    assert "self == oldSelf" not in rules_at("PromptExperiment", ".spec.candidate.alias")


def test_rules_declared_on_types_and_classes_reach_the_schema() -> None:
    assert "self.lowerAscii() != 'latest'" in rules_at("PromptAlias", ".spec.alias")
    assert "self.lowerAscii() != 'latest'" in rules_at("PromptExperiment", ".spec.candidate.alias")
    assert any("size(self.prompt)" in rule for rule in rules_at("PromptAlias", ".spec"))
    assert any("namespace" in rule for rule in rules_at("ClusterPromptRegistry", ".spec"))
    # the shared base rule and the kind-specific ones are all there, base first
    registry_rules = rules_at("PromptRegistry", ".spec")
    assert "trackingUri.startsWith('https://')" in registry_rules[0]
    assert len(registry_rules) == 4


def test_map_key_constraints_become_a_cel_rule() -> None:
    (rule,) = rules_at("PromptAlias", ".spec.policy.requireVersionTags")
    assert rule == "self.all(k, size(k) >= 1 && size(k) <= 250)"


def test_descriptions_come_from_docstrings() -> None:
    schema = schema_of("PromptAlias")
    assert schema["description"].startswith("PromptAlias declares where an MLflow prompt alias points")
    version = schema["properties"]["spec"]["properties"]["version"]["description"]
    assert "follow MLflow" in version
    assert "\n" not in version  # wrapped docstring lines are joined


def test_cel_quote_escapes_backslashes_and_quotes() -> None:
    assert cel_quote(r"^a\.b'c$") == r"'^a\\.b\'c$'"


class _Union(BaseModel):
    value: int | str


class _Exclusive(BaseModel):
    value: Annotated[int, Field(gt=0)]


class _Url(BaseModel):
    value: AnyHttpUrl


class _Item(KubeModel):
    flag: bool = True


class _DefaultInList(KubeModel):
    items: Annotated[list[_Item], Field(max_length=3)]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_Union, "union of 2 types is not structural"),
        (_Exclusive, "use ge/le bounds"),
        (_DefaultInList, "default inside a list item"),
        (_Url, "format 'uri' would be checked by pydantic but not by the apiserver"),
    ],
)
def test_unstructural_models_are_refused(model: type[BaseModel], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        structural_schema(model)


def test_field_rules_merge_with_the_rules_of_the_referenced_model() -> None:
    class Inner(KubeModel):
        __cel__ = (Rule("self.a > 0", "a must be positive", check=lambda inner: inner.a > 0),)
        a: int = 1

    class Outer(KubeModel):
        inner: Annotated[Inner, Validations(Rule("self == oldSelf", "immutable"))]
        """The inner one."""

    schema = structural_schema(Outer)
    inner = schema["properties"]["inner"]
    assert [rule["rule"] for rule in inner[VALIDATIONS_KEY]] == ["self.a > 0", "self == oldSelf"]
    assert inner["description"] == "The inner one."
    assert inner["properties"]["a"] == {"type": "integer", "default": 1}


def test_every_resource_declares_its_crd_facts() -> None:
    resource: type[Resource]
    for resource in RESOURCES:
        assert resource.PLURAL.endswith("s")
        assert resource.KIND.lower() == resource.SINGULAR
        assert resource.PRINTER_COLUMNS
    assert PromptAlias.SELECTABLE_FIELDS == (".spec.prompt", ".spec.alias", ".spec.registryRef.name")
