"""`--namespace-selector`: serve only namespaces whose labels match (a kopf `when=` filter)."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from promptalias.handlers.state import World
from promptalias.kube import KubeError
from promptalias.reconcile.scope import parse_selector, selected

log = logging.getLogger(__name__)

SELECTOR_ENV = "PROMPTALIAS_NAMESPACE_SELECTOR"
# Read once at import: `promptalias operator` sets the variable before importing the handlers.
SELECTOR = parse_selector(os.environ.get(SELECTOR_ENV, ""))


def in_scope(namespace: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """kopf `when=` filter for namespaced handlers, from the namespace cache only (kopf calls it
    synchronously on the event loop: no API call here). The cache is filled at start-up and kept
    by the namespace watch (handlers/registries.py); a namespace it does not know yet (an object
    that arrived before its namespace's own event) passes, and the PromptAlias event handler
    decides on an awaited read (`in_scope_async`)."""
    if not SELECTOR or namespace is None:
        return True
    world = getattr(memo, "world", None)
    labels = world.namespaces.get(namespace) if world is not None else None
    return labels is None or selected(SELECTOR, labels)


async def in_scope_async(world: World, namespace: str | None) -> bool:
    """Like `in_scope`, reading a namespace the cache does not know yet (without blocking)."""
    if not SELECTOR or namespace is None:
        return True
    labels = world.namespaces.get(namespace)
    if labels is None:
        try:
            labels = (await world.kube.namespace_labels(namespace)).get(namespace, {})
        except KubeError as exc:
            log.info("cannot read namespace %s (%s); its objects wait for its watch event", namespace, exc)
            return False
        world.namespaces[namespace] = labels
    return selected(SELECTOR, labels)
