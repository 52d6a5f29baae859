"""kopf wiring for PromptAlias: raw events feed the claim table, the bodies and the work queue; a
lease daemon per object says this process may serve it (handlers/alias_queue.py runs the passes);
a finalizer applies the deletion policy."""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from promptalias.api.promptalias import DeletionPolicy, PromptAlias
from promptalias.api.types import GROUP, VERSION
from promptalias.handlers.alias_queue import AliasWorkers
from promptalias.handlers.finalizers import Finalizer
from promptalias.handlers.scope import in_scope, in_scope_async
from promptalias.handlers.state import InvalidRegistryConfig, World
from promptalias.reconcile.alias_requests import request_of, wants_pass
from promptalias.reconcile.alias_table import alias_entry
from promptalias.reconcile.ownership import Owner
from promptalias.reconcile.registry import Unresolved, resolve_registry
from promptalias.reconcile.workqueue import Priority
from promptalias.registry import RegistryError
from promptalias.stages import stage

log = logging.getLogger(__name__)

DELETION_TIMEOUT_S = 300.0


@kopf.on.event(GROUP, VERSION, PromptAlias.PLURAL, when=in_scope)
async def alias_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Keep the claim table and bodies current; queue a pass on a user's change, rivals on a release."""
    world: World = memo.world
    # The dict kopf keeps as this object's latest body: `remember` slims it in place (state.py).
    body = cast(dict[str, Any], event["object"])
    meta = body.get("metadata", {})
    uid = str(meta.get("uid"))
    if event["type"] != "DELETED" and not await in_scope_async(world, meta.get("namespace")):
        return
    before = world.aliases.get(uid)
    known = world.bodies.get(uid)
    if event["type"] == "DELETED":
        world.untrack(uid)
        memo.alias_workers.forget(uid)
        now = None
    else:
        now = alias_entry(body)
        if now is not None:
            world.table.track(now)
            world.remember(body)
    # A change of writer or a departure can hand the alias to a rival: let them re-check.
    if before is not None and (now is None or now.deleting != before.deleting or now.writes != before.writes):
        rivals = world.table.uids_where(prompt=before.prompt, alias=before.alias)
        world.poke([u for u in rivals if u != uid], fresh=True)
    if now is not None and before is None:
        rivals = world.table.uids_where(prompt=now.prompt, alias=now.alias)
        world.poke([u for u in rivals if u != uid], fresh=True)
    # A user's request is a new generation or a new request annotation; our own status writes
    # and kopf's finalizer patch change neither, and the watch replays what the start-up listing
    # already queued (a read per prompt is shared only by passes queued before it).
    if now is not None and wants_pass(body) and (known is None or request_of(body) != request_of(known)):
        stage("event", f"{now.namespace}/{now.name}", (body.get("spec") or {}).get("version"))
        world.enqueue(uid, priority=Priority.URGENT, fresh=True)


@kopf.daemon(GROUP, VERSION, PromptAlias.PLURAL, cancellation_timeout=15.0, when=in_scope)
async def alias_lease(uid: str | None, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any) -> None:
    """This process serves the PromptAlias while kopf runs this daemon (not paused, not deleting)."""
    workers: AliasWorkers = memo.alias_workers
    await workers.lease(str(uid), stopped)


@kopf.on.delete(GROUP, VERSION, PromptAlias.PLURAL, when=in_scope)
async def alias_deleted(
    body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, patch: kopf.Patch, retry: int, **_: Any
) -> None:
    """Apply deletionPolicy (reconcile/deletion.py); never hang for ever when the registry is gone."""
    world: World = memo.world
    workers: AliasWorkers = memo.alias_workers
    await workers.idle(str(meta.get("uid")))  # a pass that started before the deletion ends first
    pa = PromptAlias.from_body(body)
    spec = pa.spec
    namespace = str(meta.get("namespace"))
    finalizer = Finalizer(body, patch, retry, pa, DELETION_TIMEOUT_S)
    if finalizer.abandon(f"MLflow alias {spec.uri} left as it is"):
        return
    known = resolve_registry(spec.registry_ref, namespace, world.namespaces.get(namespace), world.registries)
    if isinstance(known, Unresolved):
        finalizer.left_in_mlflow(
            f"registry unavailable ({known.message}); MLflow alias {spec.uri} was not touched"
        )
        return
    ours = pa.status.resolved_version
    try:
        await finalizer.remove_alias(
            await world.client(known),
            prompt=spec.prompt,
            alias=spec.alias,
            wanted=spec.deletion_policy == DeletionPolicy.DELETE and spec.version is not None,
            version=ours,
            me=Owner(world.cluster, namespace, str(meta.get("name"))),
            deleted=lambda current: f"deletionPolicy Delete: removed {spec.uri} (was version {current})",
            kept=lambda current: (
                f"deletionPolicy Delete: {spec.uri} points at {current}, not our version "
                f"{ours}; left as it is"
            ),
        )
    except (InvalidRegistryConfig, RegistryError) as exc:
        finalizer.retry_or_give_up(
            exc,
            to="apply deletionPolicy",
            doing="applying deletionPolicy",
            left=f"; {spec.uri} left as it is",
        )
    finally:
        world.projection_hashes.pop(str(meta.get("uid")), None)
