"""Restore projection ConfigMaps that were deleted or edited by hand.

A watch on the operator's own ConfigMaps (label `app.kubernetes.io/managed-by=promptalias`, the
RBAC it already needs for server-side apply plus list/watch): when one no longer holds what its
PromptAlias last applied, the in-memory hash is marked stale and the PromptAlias's worker is woken,
so the next pass applies the projection again. The decision is `projection.verify.drift_reason`.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from promptalias.handlers.scope import in_scope
from promptalias.handlers.state import World
from promptalias.projection.render import MANAGED_BY_LABEL, MANAGED_BY_VALUE, PROJECTION_SELECTOR
from promptalias.projection.verify import STALE, drift_reason, owner_uid

log = logging.getLogger(__name__)


@kopf.on.startup()
async def watch_only_projections(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Filter on the apiserver: the operator never receives other ConfigMaps."""
    settings.watching.label_selectors["", "v1", "configmaps"] = PROJECTION_SELECTOR


@kopf.on.event("", "v1", "configmaps", labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE}, when=in_scope)
async def projection_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    world: World = memo.world
    body = event["object"]
    uid = owner_uid(body)
    if uid is None:
        return
    expected = world.projection_hashes.get(uid)
    if expected is None or expected == STALE:
        return  # not applied by this process yet: its next pass reads and compares anyway
    reason = drift_reason(event.get("type"), body, expected)
    if reason is None:
        return
    meta = body.get("metadata", {})
    log.info("projection ConfigMap %s/%s %s; restoring it", meta.get("namespace"), meta.get("name"), reason)
    world.projection_hashes[uid] = STALE
    world.poke([uid], fresh=False)
