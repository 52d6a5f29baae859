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
from promptalias.handlers.scope import in_scope
from promptalias.handlers.state import AliasEntry, InvalidRegistryConfig, World
from promptalias.handlers.worker import WorkerSpec, run_worker
from promptalias.reconcile.deletion import (
    Retry,
    abandoned,
    after_failure,
    deleting_conditions,
    plan_deletion,
    since_deletion,
)
from promptalias.reconcile.ownership import Owner, owner_tag_key
from promptalias.reconcile.registry import Unresolved, registry_key, resolve_registry
from promptalias.reconcile.timestamps import parse_timestamp
from promptalias.registry import RegistryError, RegistryUnavailable
from promptalias.vocabulary import ABANDON_ANNOTATION, ALIAS_REQUEST_ANNOTATIONS

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
    if abandoned(meta.get("annotations")):
        kopf.event(
            body,
            type="Warning",
            reason="AliasAbandoned",
            message=f"{ABANDON_ANNOTATION}=true: MLflow alias {spec.uri} left as it is",
        )
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
    me = Owner(world.cluster, namespace, str(meta.get("name")))
    try:
        client = await world.client(known)
        state = await client.get_prompt(spec.prompt)
        current = state.aliases.get(spec.alias)
        plan = plan_deletion(
            wanted=spec.deletion_policy == DeletionPolicy.DELETE and spec.version is not None,
            version=pa.status.resolved_version,
            current=current,
            mark=Owner.from_tag(state.tags.get(owner_tag_key(spec.alias))),
            me=me,
        )
        if plan.delete:
            await client.delete_alias(spec.prompt, spec.alias)
            kopf.event(
                body,
                type="Normal",
                reason="AliasDeleted",
                message=f"deletionPolicy Delete: removed {spec.uri} (was version {current})",
            )
        elif plan.kept:
            kopf.event(
                body,
                type="Normal",
                reason="AliasKept",
                message=f"deletionPolicy Delete: {spec.uri} points at {current}, not our version "
                f"{pa.status.resolved_version}; left as it is",
            )
        if plan.release:
            await client.delete_prompt_tag(spec.prompt, owner_tag_key(spec.alias))
    except (InvalidRegistryConfig, RegistryError) as exc:
        now = datetime.now(UTC)
        elapsed = since_deletion(meta.get("deletionTimestamp"), now)
        step = after_failure(
            transient=isinstance(exc, RegistryUnavailable),
            elapsed=elapsed,
            timeout_s=DELETION_TIMEOUT_S,
            retry=retry,
        )
        if isinstance(step, Retry):
            patch.status["conditions"] = _deleting_condition(pa, str(exc), retry, now)
            raise kopf.TemporaryError(
                f"cannot reach MLflow to apply deletionPolicy ({exc}); retrying. To delete without touching "
                f"MLflow: kubectl annotate promptalias {meta.get('name')} {ABANDON_ANNOTATION}=true",
                delay=step.delay,
            ) from None
        kopf.event(
            body,
            type="Warning",
            reason="AliasLeftInMLflow",
            message=f"gave up applying deletionPolicy after {elapsed:.0f}s: {exc}; {spec.uri} left as it is",
        )
    finally:
        world.projection_hashes.pop(str(meta.get("uid")), None)


def _deleting_condition(pa: PromptAlias, problem: str, retry: int, now: datetime) -> list[dict[str, Any]]:
    """status.conditions while the finalizer retries (the builder every status write uses)."""
    conditions = deleting_conditions(
        pa.status.conditions, problem, retry=retry, generation=pa.generation, now=now
    )
    return [condition.to_dict() for condition in conditions]
