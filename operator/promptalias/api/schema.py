"""From pydantic models to CustomResourceDefinitions.

`structural_schema` turns a model's JSON schema into a Kubernetes *structural* OpenAPI v3 schema:
$refs inlined (a field's own description and rules win over the referenced model's), `title`s
dropped, `X | None` collapsed to an optional (non-nullable) X, `const` turned into `enum`,
`propertyNames` turned into a CEL rule over the map's keys. Anything Kubernetes would refuse or
silently misread (other unions, exclusive bounds, defaults inside list items, unknown keywords) is
an error here rather than a surprise at install time.

Optional fields are not `nullable`: the apiserver drops a null for them before defaulting, so
`version: null` in YAML means "omitted" and a merge patch with null removes a status field.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel

from promptalias.api.cel import VALIDATIONS_KEY, cel_quote
from promptalias.api.resource import Resource
from promptalias.api.types import GROUP, VERSION

# Keywords of apiextensions/v1 JSONSchemaProps this generator emits; anything else is a bug.
_ALLOWED_KEYS: Final = frozenset(
    {
        "type",
        "description",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "enum",
        "default",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        VALIDATIONS_KEY,
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-map-type",
    }
)
_DROPPED_KEYS: Final = frozenset({"title", "examples", "$defs", "$schema"})
_FORMATS: Final = frozenset({"date-time", "int32", "int64", "byte"})
_MERGED_LISTS: Final = (VALIDATIONS_KEY, "required")


class SchemaError(ValueError):
    """The models describe something a structural CRD schema cannot express."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of `model` (camelCase property names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _Converter(definitions).convert(raw, path=model.__name__, in_list=False)


class _Converter:
    def __init__(self, definitions: Mapping[str, Any]) -> None:
        self.definitions = definitions

    def convert(self, node: Mapping[str, Any], *, path: str, in_list: bool) -> dict[str, Any]:
        node = self._flatten(node, path)
        key_pattern: dict[str, str] = {}
        if "patternProperties" in node:
            # dict[ConstrainedKey, V]: pydantic puts the key pattern here, the key lengths in propertyNames.
            ((pattern, values),) = node["patternProperties"].items()
            key_pattern = {"pattern": pattern}
            node = {**node, "additionalProperties": values}
            node.setdefault("propertyNames", {})
        result: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED_KEYS:
                continue
            if key == "default":
                if value is None:
                    continue
                if in_list:
                    raise SchemaError(
                        f"{path}: default inside a list item; list items must not be defaulted "
                        "(server-side apply and GitOps diffs would fight over them)"
                    )
                result[key] = value
            elif key == "description":
                result[key] = _description(value)
            elif key == "const":
                result["enum"] = [value]
            elif key == "properties":
                result[key] = {
                    name: self.convert(child, path=f"{path}.{name}", in_list=in_list)
                    for name, child in value.items()
                }
            elif key == "items":
                result[key] = self.convert(value, path=f"{path}[]", in_list=True)
            elif key == "additionalProperties":
                if value is False:
                    continue  # structural schemas prune unknown fields anyway
                if value is True:
                    result["x-kubernetes-preserve-unknown-fields"] = True
                else:
                    result[key] = self.convert(value, path=f"{path}{{}}", in_list=in_list)
            elif key == "propertyNames":
                result.setdefault(VALIDATIONS_KEY, []).append(_key_rule({**value, **key_pattern}, path))
            elif key == "patternProperties":
                continue  # folded into additionalProperties and key_pattern above
            elif key == "format":
                if value not in _FORMATS:
                    raise SchemaError(
                        f"{path}: format {value!r} would be checked by pydantic but not by the apiserver; "
                        "use a plain str with a pattern"
                    )
                result[key] = value
            elif key in {"exclusiveMinimum", "exclusiveMaximum"}:
                raise SchemaError(
                    f"{path}: use ge/le bounds, not gt/lt ({key} differs between OpenAPI versions)"
                )
            elif key in _ALLOWED_KEYS:
                result[key] = list(value) if isinstance(value, list) else value
            else:
                raise SchemaError(f"{path}: JSON schema keyword {key!r} has no structural equivalent")
        if VALIDATIONS_KEY in result:
            result[VALIDATIONS_KEY] = _dedupe(result[VALIDATIONS_KEY])
        if "required" in result:
            result["required"] = sorted(set(result["required"]))
        if "type" not in result and not result.get("x-kubernetes-preserve-unknown-fields"):
            raise SchemaError(f"{path}: no type")
        return result

    def _flatten(self, node: Mapping[str, Any], path: str) -> dict[str, Any]:
        """Resolve $ref / allOf-of-one / optional anyOf into one node; the outer keys win."""
        node = dict(node)
        target: Mapping[str, Any] | None = None
        if "$ref" in node:
            target = self._resolve(node.pop("$ref"), path)
        elif "allOf" in node:
            branches = node.pop("allOf")
            if len(branches) != 1:
                raise SchemaError(f"{path}: allOf with {len(branches)} branches is not structural")
            target = branches[0]
        elif "anyOf" in node:
            branches = [branch for branch in node.pop("anyOf") if branch.get("type") != "null"]
            if len(branches) != 1:
                raise SchemaError(f"{path}: a union of {len(branches)} types is not structural; use one type")
            target = branches[0]
        if target is None:
            return node
        merged = self._flatten(target, path)
        for key, value in node.items():
            if key in _MERGED_LISTS and key in merged:
                merged[key] = [*merged[key], *value]
            else:
                merged[key] = value
        return merged

    def _resolve(self, ref: str, path: str) -> Mapping[str, Any]:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in self.definitions:
            raise SchemaError(f"{path}: unresolvable $ref {ref!r}")
        resolved: Mapping[str, Any] = self.definitions[ref[len(prefix) :]]
        return resolved


def _description(text: str) -> str:
    """Docstrings to descriptions: dedented, wrapped lines joined, paragraphs kept."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs)


def _key_rule(constraints: Mapping[str, Any], path: str) -> dict[str, Any]:
    checks: list[str] = []
    words: list[str] = []
    if "minLength" in constraints:
        checks.append(f"size(k) >= {constraints['minLength']}")
    if "maxLength" in constraints:
        checks.append(f"size(k) <= {constraints['maxLength']}")
    if {"minLength", "maxLength"} <= constraints.keys():
        words.append(f"{constraints['minLength']} to {constraints['maxLength']} characters long")
    elif "maxLength" in constraints:
        words.append(f"at most {constraints['maxLength']} characters long")
    elif "minLength" in constraints:
        words.append(f"at least {constraints['minLength']} characters long")
    if "pattern" in constraints:
        checks.append(f"k.matches({cel_quote(constraints['pattern'])})")
        words.append(f"match {constraints['pattern']}")
    unknown = set(constraints) - {"minLength", "maxLength", "pattern", "type", "title"}
    if unknown or not checks:
        raise SchemaError(f"{path}: unsupported key constraints {sorted(unknown)}")
    return {
        "rule": "self.all(k, " + " && ".join(checks) + ")",
        "message": "keys must be " + " and ".join(words),
    }


def _dedupe(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for rule in rules:
        if rule not in seen:
            seen.append(rule)
    return seen


def resource_schema(resource: type[Resource]) -> dict[str, Any]:
    """The openAPIV3Schema of a resource: type meta, metadata, spec (required) and status."""
    spec = structural_schema(resource.model_fields["spec"].annotation)  # type: ignore[arg-type]
    status = structural_schema(resource.model_fields["status"].annotation)  # type: ignore[arg-type]
    return {
        "type": "object",
        "description": _description(resource.__doc__ or resource.KIND),
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object.",
            },
            "kind": {
                "type": "string",
                "description": "Kind is the REST resource this object represents.",
            },
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def build_crd(resource: type[Resource]) -> dict[str, Any]:
    """The CustomResourceDefinition of a resource class (apiextensions.k8s.io/v1)."""
    names: dict[str, Any] = {
        "kind": resource.KIND,
        "listKind": f"{resource.KIND}List",
        "plural": resource.PLURAL,
        "singular": resource.SINGULAR,
    }
    if resource.SHORT_NAMES:
        names["shortNames"] = list(resource.SHORT_NAMES)
    if resource.CATEGORIES:
        names["categories"] = list(resource.CATEGORIES)
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "schema": {"openAPIV3Schema": resource_schema(resource)},
    }
    if resource.PRINTER_COLUMNS:
        version["additionalPrinterColumns"] = [column.to_crd() for column in resource.PRINTER_COLUMNS]
    if resource.SELECTABLE_FIELDS:
        version["selectableFields"] = [{"jsonPath": path} for path in resource.SELECTABLE_FIELDS]
    return crd_document(
        GROUP,
        resource.PLURAL,
        {"group": GROUP, "names": names, "scope": resource.SCOPE, "versions": [version]},
    )


def crd_document(group: str, plural: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The CustomResourceDefinition `<plural>.<group>` with this spec, labelled part of promptalias
    (ours and the kopf peering CRDs shipped with them)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"app.kubernetes.io/part-of": "promptalias"}},
        "spec": spec,
    }
