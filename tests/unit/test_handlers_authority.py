"""The claim gathering behind the tenancy checks (handlers/authority.py), on a World without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from promptalias.api.promptalias import RegistryKind
from promptalias.api.registry import ClusterPromptRegistrySpec, PromptRegistrySpec
from promptalias.handlers.authority import alias_claims, refuse_write
from promptalias.handlers.state import World
from promptalias.reconcile.alias_table import AliasEntry
from promptalias.reconcile.registry import KnownRegistry, RegistryKey
from promptalias.reconcile.tenancy import Authority, WriteAction

URI = "http://mlflow:5000"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SHARED = RegistryKey(RegistryKind.CLUSTER_PROMPT_REGISTRY, None, "shared")


def world() -> World:
    w = World(cast(Any, None), "c1")
    spec = ClusterPromptRegistrySpec.model_validate(
        {
            "trackingUri": URI,
            "conditions": [
                {"namespaces": ["billing"], "writePrompts": ["invoice-*"]},
                {"namespaces": ["sandbox"]},
            ],
        }
    )
    w.registries[SHARED] = KnownRegistry(SHARED, spec, "u1", 1)
    for namespace in ("billing", "sandbox"):
        key = RegistryKey(RegistryKind.PROMPT_REGISTRY, namespace, "mlflow")
        w.registries[key] = KnownRegistry(
            key, PromptRegistrySpec.model_validate({"trackingUri": URI}), "u", 1
        )
        w.namespaces[namespace] = {}
    return w


def add(
    w: World,
    namespace: str,
    name: str,
    registry: RegistryKey,
    *,
    minutes: int,
    pinned: bool = True,
    deleting: bool = False,
    prompt: str = "invoice-parser",
) -> None:
    uid = f"{namespace}-{name}"
    w.table.track(
        AliasEntry(
            uid,
            namespace,
            name,
            registry,
            prompt,
            "production",
            T0 + timedelta(minutes=minutes),
            pinned,
            deleting,
        )
    )


def own(namespace: str) -> RegistryKey:
    return RegistryKey(RegistryKind.PROMPT_REGISTRY, namespace, "mlflow")


def test_claims_carry_each_resources_own_authority_and_skip_deletions() -> None:
    w = world()
    add(w, "billing", "follower", SHARED, minutes=5, pinned=False)
    add(w, "sandbox", "squatter", own("sandbox"), minutes=0)
    add(w, "sandbox", "reader", SHARED, minutes=0)
    add(w, "billing", "gone", SHARED, minutes=0, deleting=True)
    add(w, "billing", "other-prompt", SHARED, minutes=0, prompt="invoice-other")
    claims = {c.ref: c.authority for c in alias_claims(w, URI, "invoice-parser", "production")}
    assert claims == {
        "billing/follower": Authority.GRANTED,
        "sandbox/squatter": Authority.OWN,
        "sandbox/reader": Authority.NONE,
    }


def test_refuse_write_through_each_registry() -> None:
    w = world()
    add(w, "billing", "follower", SHARED, minutes=5, pinned=False)
    add(w, "sandbox", "squatter", own("sandbox"), minutes=0)
    kwargs: dict[str, Any] = {"prompt": "invoice-parser", "alias": "production"}
    refused = refuse_write(w, w.registries[own("sandbox")], WriteAction.PIN, namespace="sandbox", **kwargs)
    assert refused is not None
    assert refused.holder == "billing/follower"
    reader = refuse_write(w, w.registries[SHARED], WriteAction.ROLLBACK, namespace="sandbox", **kwargs)
    assert reader is not None
    assert reader.message.startswith("ClusterPromptRegistry shared gives namespace sandbox no write access")
    assert refuse_write(w, w.registries[SHARED], WriteAction.PIN, namespace="billing", **kwargs) is None
    gone = RegistryKey(RegistryKind.PROMPT_REGISTRY, "nowhere", "mlflow")
    unknown = KnownRegistry(gone, PromptRegistrySpec.model_validate({"trackingUri": URI}), "u", 1)
    assert refuse_write(w, unknown, WriteAction.PIN, namespace="nowhere", **kwargs) is not None
