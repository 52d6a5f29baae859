"""Operator start-up and shutdown: kopf settings, shared state, and a preload of the world.

The preload matters for correctness: before any worker decides who holds an alias, every
PromptAlias and registry must be known, or a younger resource could write during start-up. It
also fills the work queue in priority order (resources whose status is behind their spec first)
and holds the bodies the first passes decide on, so start-up needs no read per object.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import kopf

from promptalias.api.promptalias import PromptAlias, RegistryKind
from promptalias.api.registry import ClusterPromptRegistry, PromptRegistry
from promptalias.handlers.alias_queue import AliasWorkers, workers_from_environment
from promptalias.handlers.gc_pauses import freeze_survivors, watch_pauses
from promptalias.handlers.kopf_storage import NoDiffBase
from promptalias.handlers.registries import parse_registry
from promptalias.handlers.scope import SELECTOR
from promptalias.handlers.state import World
from promptalias.kube import Kube, KubeError
from promptalias.projection.render import PROJECTION_SELECTOR
from promptalias.projection.verify import owner_uid, valid_hash
from promptalias.reconcile.alias_requests import wants_pass
from promptalias.reconcile.alias_table import alias_entry
from promptalias.reconcile.scope import selected
from promptalias.reconcile.workqueue import Priority

log = logging.getLogger(__name__)

PREFIX = "promptalias.io"
# Set by `promptalias operator`: which namespaces are watched (empty: all) and the cluster id.
KOPF_WORKER_LIMIT = int(os.environ.get("PROMPTALIAS_KOPF_WORKERS", "100"))
WATCHED_NAMESPACES_ENV = "PROMPTALIAS_WATCH_NAMESPACES"
CLUSTER_ID_ENV = "PROMPTALIAS_CLUSTER_ID"
PEERING_ENV = "PROMPTALIAS_PEERING_NAME"


def _watched() -> list[str]:
    raw = os.environ.get(WATCHED_NAMESPACES_ENV, "")
    return [ns for ns in raw.split(",") if ns]


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()  # no PATCH per spec change (kopf_storage.py)
    # Events are posted explicitly (one per transition); log lines never become Events.
    settings.posting.level = logging.CRITICAL + 10
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # kopf handles each object's events in a worker of its own, by default with no limit: at start-up
    # that is one worker per object at once, each with copies of its body (the transient peak the
    # RSS keeps). A bound keeps start-up memory flat; idle workers leave sooner to make room.
    settings.queueing.worker_limit = KOPF_WORKER_LIMIT
    settings.queueing.idle_timeout = 1.0
    settings.peering.lifetime = int(os.environ.get("PROMPTALIAS_PEERING_LIFETIME", "60"))
    kube = Kube.from_environment()
    cluster = os.environ.get(CLUSTER_ID_ENV) or await kube.cluster_uid()
    world = World(kube, cluster)
    memo.world = world
    await _preload(world, _watched())
    workers = AliasWorkers(world, workers_from_environment())
    memo.alias_workers = workers
    workers.start()
    if peering := os.environ.get(PEERING_ENV):
        # kopf waits, paused, until its peering object exists; a chart cannot template it in the
        # release that installs its CRD, so the operator creates it (RBAC: `create` on kopf.dev).
        scopes: list[str | None] = list(_watched()) or [None]
        for scope in scopes:
            try:
                await kube.ensure_peering(peering, scope)
            except KubeError as exc:
                log.warning("cannot create the kopf peering object %s: %s", peering, exc)
    watch_pauses()
    freeze_survivors()  # imports, settings and the preload live as long as the process
    log.info(
        "promptalias operator ready: cluster id %s, %d PromptAliases, %d registries",
        cluster,
        len(world.aliases),
        len(world.registries),
    )


async def _preload(world: World, namespaces: list[str]) -> None:
    world.namespaces.update(await world.kube.namespace_labels())

    def wanted(body: dict[str, Any]) -> bool:
        namespace = body.get("metadata", {}).get("namespace")
        return namespace is None or selected(SELECTOR, world.namespaces.get(namespace))

    scopes: list[str | None] = list(namespaces) if namespaces else [None]
    listed = time.monotonic()
    for scope in scopes:
        for body in await world.kube.list_custom(PromptRegistry.PLURAL, scope):
            if not wanted(body):
                continue
            if (known := parse_registry(RegistryKind.PROMPT_REGISTRY, body)) is not None:
                world.registries[known.key] = known
        for body in await world.kube.list_custom(PromptAlias.PLURAL, scope):
            if not wanted(body):
                continue
            if (entry := alias_entry(body)) is not None:
                world.table.track(entry)
                world.remember(body)
                # Queued here, served once kopf leases it (handlers/alias_queue.py); the ones the
                # user changed while we were down go first, on one shared fresh read per prompt.
                urgent = wants_pass(body)
                world.enqueue(
                    entry.uid,
                    priority=Priority.URGENT if urgent else Priority.ROUTINE,
                    fresh=urgent,
                    since=listed,
                )
        # What each projection holds now, by owner: a pass applies only what differs (one LIST
        # here instead of a read per PromptAlias).
        for configmap in await world.kube.list_configmaps(scope, PROJECTION_SELECTOR):
            if (uid := owner_uid(configmap)) is not None and (held := valid_hash(configmap)) is not None:
                world.projection_hashes[uid] = held
    for body in await world.kube.list_custom(ClusterPromptRegistry.PLURAL, None):
        if (known := parse_registry(RegistryKind.CLUSTER_PROMPT_REGISTRY, body)) is not None:
            world.registries[known.key] = known


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    workers: AliasWorkers | None = getattr(memo, "alias_workers", None)
    if workers is not None:
        await workers.stop()
    world: World | None = getattr(memo, "world", None)
    if world is not None:
        await world.close()
        await world.kube.aclose()
