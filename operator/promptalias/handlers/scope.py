"""`--namespace-selector`: serve only namespaces whose labels match (a kopf `when=` filter)."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from promptalias.reconcile.scope import parse_selector, selected

log = logging.getLogger(__name__)

SELECTOR_ENV = "PROMPTALIAS_NAMESPACE_SELECTOR"
# Read once at import: `promptalias operator` sets the variable before importing the handlers.
SELECTOR = parse_selector(os.environ.get(SELECTOR_ENV, ""))


def namespace_labels(memo: kopf.Memo, namespace: str) -> dict[str, str] | None:
    """Labels from the operator's namespace cache; a namespace not seen yet is read once (sync,
    rare: the first object of a brand-new namespace can arrive before the namespace's own event)."""
    world = getattr(memo, "world", None)
    if world is None:
        return None
    labels: dict[str, str] | None = world.namespaces.get(namespace)
    if labels is None:
        try:
            found = world.kube.core.read_namespace(namespace)
        except Exception as exc:  # noqa: BLE001 - treated as "not known yet"
            log.debug("cannot read namespace %s: %s", namespace, exc)
            return None
        labels = dict(found.metadata.labels or {})
        world.namespaces[namespace] = labels
    return labels


def in_scope(namespace: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """kopf `when=` filter for namespaced handlers."""
    if not SELECTOR or namespace is None:
        return True
    return selected(SELECTOR, namespace_labels(memo, namespace))
