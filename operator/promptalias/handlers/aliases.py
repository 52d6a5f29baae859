"""kopf wiring for PromptAlias: raw events feed the claim table and poke workers; a daemon per
object reconciles serially; a finalizer applies the deletion policy."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from promptalias.api.promptalias import DeletionPolicy, PromptAlias
from promptalias.api.types import GROUP, VERSION
from promptalias.handlers.alias_reconciler import AliasPass, PassResult
from promptalias.handlers.finalizers import Finalizer
from promptalias.handlers.scope import in_scope
from promptalias.handlers.state import AliasEntry, InvalidRegistryConfig, World
from promptalias.handlers.worker import WorkerSpec, run_worker
from promptalias.reconcile.ownership import Owner
from promptalias.reconcile.registry import Unresolved, registry_key, resolve_registry
from promptalias.reconcile.timestamps import parse_timestamp
from promptalias.registry import RegistryError
from promptalias.vocabulary import ALIAS_REQUEST_ANNOTATIONS

log = logging.getLogger(__name__)

DELETION_TIMEOUT_S = 300.0


def _entry(body: Mapping[str, Any]) -> AliasEntry | None:
    meta = body.get("metadata", {})
    spec = body.get("spec", {})
    try:
        ref = PromptAlias.from_body(body).spec.registry_ref
    except ValueError:
        return None
    return AliasEntry(
        uid=str(meta.get("uid")),
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        registry=registry_key(ref, str(meta.get("namespace"))),
        prompt=str(spec.get("prompt")),
        alias=str(spec.get("alias")),
        created=parse_timestamp(meta.get("creationTimestamp")) or datetime.now(UTC),
        writes=spec.get("version") is not None,
        deleting=meta.get("deletionTimestamp") is not None,
    )


@kopf.on.event(GROUP, VERSION, PromptAlias.PLURAL, when=in_scope)
async def alias_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Keep the claim table current; wake the worker on spec changes and rivals on a release."""
    world: World = memo.world
    body = event["object"]
    uid = str(body.get("metadata", {}).get("uid"))
    before = world.aliases.get(uid)
    if event["type"] == "DELETED":
        world.aliases.pop(uid, None)
        world.workers.pop(uid, None)
        world.projection_hashes.pop(uid, None)
        now = None
    else:
        now = _entry(body)
        if now is not None:
            world.aliases[uid] = now
    # A change of writer or a departure can hand the alias to a rival: let them re-check.
    if before is not None and (now is None or now.deleting != before.deleting or now.writes != before.writes):
        rivals = world.uids_where(prompt=before.prompt, alias=before.alias)
        world.poke([u for u in rivals if u != uid], fresh=True)
    if now is not None and before is None:
        rivals = world.uids_where(prompt=now.prompt, alias=now.alias)
        world.poke([u for u in rivals if u != uid], fresh=True)
    if now is not None and event["type"] != "DELETED":
        meta = body.get("metadata", {})
        status = body.get("status") or {}
        spec_changed = status.get("observedGeneration") != meta.get("generation")
        wants_action = bool(set(ALIAS_REQUEST_ANNOTATIONS) & set(meta.get("annotations") or {}))
        if spec_changed or wants_action:
            world.worker(uid).poke(fresh=True)


@kopf.daemon(GROUP, VERSION, PromptAlias.PLURAL, cancellation_timeout=10.0, when=in_scope)
async def alias_worker(
    body: kopf.Body, uid: str | None, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    """Reconcile one PromptAlias whenever poked (spec change, MLflow change, rival left) or due."""
    world: World = memo.world

    async def one_pass(snapshot: Mapping[str, Any], fresh: bool, failures: int) -> PassResult:
        return await AliasPass(world, snapshot, fresh=fresh, failures=failures).run()

    spec = WorkerSpec("PromptAlias", PromptAlias.PLURAL, one_pass)
    await run_worker(world, world.worker(str(uid)), spec, body, stopped)


@kopf.on.delete(GROUP, VERSION, PromptAlias.PLURAL, when=in_scope)
async def alias_deleted(
    body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, patch: kopf.Patch, retry: int, **_: Any
) -> None:
    """Apply deletionPolicy (reconcile/deletion.py); never hang for ever when the registry is gone."""
    world: World = memo.world
    pa = PromptAlias.from_body(body)
    spec = pa.spec
    namespace = str(meta.get("namespace"))
    finalizer = Finalizer(body, patch, retry, pa, DELETION_TIMEOUT_S)
    if finalizer.abandon(f"MLflow alias {spec.uri} left as it is"):
        return
    known = resolve_registry(spec.registry_ref, namespace, world.namespaces.get(namespace), world.registries)
    if isinstance(known, Unresolved):
        kopf.event(
            body,
            type="Warning",
            reason="AliasLeftInMLflow",
            message=f"registry unavailable ({known.message}); MLflow alias {spec.uri} was not touched",
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
