"""Which registry a PromptAlias uses, and whether it may: pure resolution over known registries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptalias.api.promptalias import RegistryKind, RegistryRef
from promptalias.api.registry import (
    ClusterPromptRegistry,
    ClusterPromptRegistrySpec,
    PromptRegistry,
    RegistrySpec,
)


@dataclass(frozen=True)
class RegistryKey:
    """Identifies a registry object: (kind, namespace or None for cluster scope, name)."""

    kind: RegistryKind
    namespace: str | None
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True)
class KnownRegistry:
    key: RegistryKey
    spec: RegistrySpec
    uid: str
    generation: int

    @property
    def endpoint(self) -> str:
        """Two registry objects with the same endpoint are the same MLflow (for conflicts)."""
        base = self.spec.tracking_uri.rstrip("/")
        return f"{base}#{self.spec.workspace}" if self.spec.workspace else base


def key_of(kind: RegistryKind, meta: Mapping[str, Any]) -> RegistryKey:
    """The key of a registry object from its metadata (a ClusterPromptRegistry has no namespace)."""
    namespace = meta.get("namespace") if kind == RegistryKind.PROMPT_REGISTRY else None
    return RegistryKey(kind, namespace, str(meta.get("name")))


def known_registry(kind: RegistryKind, body: Mapping[str, Any]) -> KnownRegistry:
    """A registry object's body as the operator keeps it; ValueError when its spec does not parse."""
    model = PromptRegistry if kind == RegistryKind.PROMPT_REGISTRY else ClusterPromptRegistry
    parsed = model.from_body(body)
    meta = body.get("metadata", {})
    return KnownRegistry(
        key_of(kind, meta), parsed.spec, str(meta.get("uid")), int(meta.get("generation") or 1)
    )


@dataclass(frozen=True)
class Unresolved:
    message: str


def registry_key(ref: RegistryRef, namespace: str) -> RegistryKey:
    if ref.kind == RegistryKind.CLUSTER_PROMPT_REGISTRY:
        return RegistryKey(ref.kind, None, ref.name)
    return RegistryKey(ref.kind, namespace, ref.name)


def resolve_registry(
    ref: RegistryRef,
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    registries: Mapping[RegistryKey, KnownRegistry],
) -> KnownRegistry | Unresolved:
    """The registry `ref` names, or why it cannot be used from `namespace`."""
    key = registry_key(ref, namespace)
    found = registries.get(key)
    if found is None:
        where = "cluster-scoped" if key.namespace is None else f"in namespace {namespace}"
        return Unresolved(
            f"{ref.kind} {ref.name!r} does not exist ({where}); create it or fix spec.registryRef"
        )
    spec = found.spec
    if isinstance(spec, ClusterPromptRegistrySpec):
        if not spec.conditions:
            return Unresolved(
                f"ClusterPromptRegistry {ref.name!r} has no spec.conditions, so it serves no namespace "
                f"(the default is deny); ask a cluster admin to add a condition for namespace {namespace}, "
                "or use a PromptRegistry"
            )
        if namespace_labels is None:
            return Unresolved(f"namespace {namespace} is not known yet; retrying")
        if not spec.allows_namespace(namespace, namespace_labels):
            return Unresolved(
                f"ClusterPromptRegistry {ref.name!r} does not allow namespace {namespace} (see its "
                "spec.conditions); ask a cluster admin to allow it, or use a PromptRegistry"
            )
    return found
