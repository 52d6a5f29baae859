"""Where MLflow delivers a registry's webhook events, and which registry a delivery path names (pure).

The receiver answers `POST <PATH_PREFIX>/<namespace>/<registry>` for a PromptRegistry and
`<PATH_PREFIX>/_cluster/<registry>` for a ClusterPromptRegistry; the registration tells MLflow the
same URL under the base the operator is reachable at (`--mlflow-webhook-url`). One module for both
directions, so the URL registered is always one the receiver routes.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from promptalias.api.promptalias import RegistryKind
from promptalias.reconcile.registry import RegistryKey

PATH_PREFIX: Final = "/mlflow/webhook"
CLUSTER_SCOPE: Final = "_cluster"  # namespaces never start with "_", so this path segment is unambiguous


def webhook_url(base: str, key: RegistryKey) -> str:
    """The URL MLflow calls for one registry: <base>/<namespace>/<name> or <base>/_cluster/<name>."""
    scope = key.namespace if key.namespace is not None else CLUSTER_SCOPE
    return f"{base.rstrip('/')}/{quote(scope, safe='')}/{quote(key.name, safe='')}"


def route_key(scope: str, name: str) -> RegistryKey:
    """The registry a delivery path `<PATH_PREFIX>/<scope>/<name>` names."""
    if scope == CLUSTER_SCOPE:
        return RegistryKey(RegistryKind.CLUSTER_PROMPT_REGISTRY, None, name)
    return RegistryKey(RegistryKind.PROMPT_REGISTRY, scope, name)


def split_listen(value: str, setting: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) as (host, port); ValueError naming `setting` otherwise."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{setting}={value!r}: write it as HOST:PORT, e.g. 127.0.0.1:8719")
    return host.strip("[]"), int(port)


__all__ = ["CLUSTER_SCOPE", "PATH_PREFIX", "route_key", "split_listen", "webhook_url"]
