"""kopf wiring for PromptRegistry / ClusterPromptRegistry and namespaces.

Each registry object gets a daemon that, every refreshInterval, checks the server (Ready, server
version) and reads each prompt its PromptAliases use — one request per prompt, whatever the number
of aliases — waking the workers of any prompt whose aliases moved (drift and follow mode).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from promptalias.api.conditions import Reason
from promptalias.api.duration import parse_duration
from promptalias.api.promptalias import RegistryKind
from promptalias.api.registry import ClusterPromptRegistry, PromptRegistry
from promptalias.api.types import GROUP, VERSION
from promptalias.handlers.metrics import METRICS, registry_label
from promptalias.handlers.scope import in_scope
from promptalias.handlers.state import InvalidRegistryConfig, Snapshot, World, snapshot_key
from promptalias.kube import KubeError
from promptalias.reconcile.registry import KnownRegistry, RegistryKey
from promptalias.reconcile.tenancy import serves_no_namespace
from promptalias.registry import PromptNotFound, RegistryAuthError, RegistryError

log = logging.getLogger(__name__)

DEFAULT_CHECK_S = 60.0


def _known(kind: RegistryKind, body: Mapping[str, Any]) -> KnownRegistry | None:
    model = PromptRegistry if kind == RegistryKind.PROMPT_REGISTRY else ClusterPromptRegistry
    try:
        parsed = model.from_body(body)
    except ValueError as exc:
        log.warning("ignoring %s %s: %s", kind, body.get("metadata", {}).get("name"), exc)
        return None
    meta = body.get("metadata", {})
    namespace = meta.get("namespace") if kind == RegistryKind.PROMPT_REGISTRY else None
    key = RegistryKey(kind, namespace, str(meta.get("name")))
    return KnownRegistry(key, parsed.spec, str(meta.get("uid")), int(meta.get("generation") or 1))


def _on_registry_event(kind: RegistryKind, event: kopf.RawEvent, world: World) -> None:
    body = event["object"]
    meta = body.get("metadata", {})
    namespace = meta.get("namespace") if kind == RegistryKind.PROMPT_REGISTRY else None
    key = RegistryKey(kind, namespace, str(meta.get("name")))
    before = world.registries.get(key)
    if event["type"] == "DELETED":
        world.registries.pop(key, None)
    else:
        known = _known(kind, body)
        if known is None:
            world.registries.pop(key, None)
        else:
            world.registries[key] = known
    after = world.registries.get(key)
    identity_before = (before.uid, before.generation) if before else None
    identity_after = (after.uid, after.generation) if after else None
    if identity_before != identity_after:
        world.poke(world.table.uids_where(registry=key), fresh=True)


@kopf.on.event(GROUP, VERSION, PromptRegistry.PLURAL, when=in_scope)
async def prompt_registry_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _on_registry_event(RegistryKind.PROMPT_REGISTRY, event, memo.world)


@kopf.on.event(GROUP, VERSION, ClusterPromptRegistry.PLURAL)
async def cluster_prompt_registry_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _on_registry_event(RegistryKind.CLUSTER_PROMPT_REGISTRY, event, memo.world)


@kopf.on.event("", "v1", "namespaces")
async def namespace_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """ClusterPromptRegistry conditions select namespaces by label: track the labels."""
    world: World = memo.world
    meta = event["object"].get("metadata", {})
    name = str(meta.get("name"))
    before = world.namespaces.get(name)
    if event["type"] == "DELETED":
        world.namespaces.pop(name, None)
        return
    labels = dict(meta.get("labels") or {})
    world.namespaces[name] = labels
    if before != labels:
        world.poke(
            [
                uid
                for uid in world.table.uids_where(namespace=name)
                if world.aliases[uid].registry.kind == RegistryKind.CLUSTER_PROMPT_REGISTRY
            ],
            fresh=True,
        )


def _condition(ready: bool, reason: Reason, message: str, generation: int, previous: list[Any]) -> list[Any]:
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    old = next((c for c in previous if c.get("type") == "Ready"), None)
    status = "True" if ready else "False"
    since = old.get("lastTransitionTime") if old and old.get("status") == status else now
    return [
        {
            "type": "Ready",
            "status": status,
            "reason": str(reason),
            "message": message,
            "lastTransitionTime": since,
            "observedGeneration": generation,
        }
    ]


async def _check_registry(world: World, known: KnownRegistry, body: kopf.Body) -> None:
    """Connectivity + credentials check; writes Ready/serverVersion/lastCheckTime."""
    status = dict(body.get("status") or {})
    previous = list(status.get("conditions") or [])
    server_version = status.get("serverVersion")
    try:
        client = await world.client(known)
        info = await client.check()
        conditions = _condition(
            True,
            Reason.CONNECTED,
            f"MLflow {info.version} at {known.spec.tracking_uri} "
            "answered" + (" with the configured credentials" if info.authenticated else ""),
            known.generation,
            previous,
        )
        server_version = info.version
        if (nobody := serves_no_namespace(known.spec)) is not None:
            conditions = _condition(False, Reason.NO_NAMESPACES_ALLOWED, nobody, known.generation, previous)
    except InvalidRegistryConfig as exc:
        conditions = _condition(False, Reason.INVALID_REGISTRY, str(exc), known.generation, previous)
    except RegistryAuthError as exc:
        conditions = _condition(False, Reason.UNAUTHORIZED, str(exc), known.generation, previous)
    except RegistryError as exc:
        conditions = _condition(False, Reason.REGISTRY_UNAVAILABLE, str(exc), known.generation, previous)
    new_status = {
        "observedGeneration": known.generation,
        "conditions": conditions,
        "serverVersion": server_version,
        "lastCheckTime": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
    }
    if conditions[0]["status"] == "True" and not _was_ready(previous):
        # The registry is back (or new): wake every alias that waits on it instead of letting each
        # sit out its own backoff.
        world.poke(world.table.uids_where(registry=known.key), fresh=True)
    old_ready: dict[str, Any] = next((c for c in previous if c.get("type") == "Ready"), {})
    if (
        old_ready.get("status") != conditions[0]["status"]
        or old_ready.get("reason") != conditions[0]["reason"]
    ):
        kind = "Normal" if conditions[0]["status"] == "True" else "Warning"
        kopf.event(body, type=kind, reason=conditions[0]["reason"], message=conditions[0]["message"])
    plural = (
        PromptRegistry.PLURAL
        if known.key.kind == RegistryKind.PROMPT_REGISTRY
        else ClusterPromptRegistry.PLURAL
    )
    try:
        await world.kube.patch_status(plural, known.key.namespace, known.key.name, new_status)
    except KubeError as exc:
        log.warning("could not write status of %s: %s", known.key, exc)


def _was_ready(conditions: list[Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def _poll_prompts(world: World, known: KnownRegistry) -> bool:
    """One read per prompt in use on this endpoint; wake the workers of prompts that changed.

    True when every prompt was read (a completed poll, counted in `promptalias_registry_polls_total`).
    """
    prompts = {world.aliases[uid].prompt for uid in world.table.uids_where(endpoint=known.endpoint)}
    if not prompts:
        return True
    client = await world.client(known)
    for prompt in sorted(prompts):
        try:
            state = await client.get_prompt(prompt)
        except PromptNotFound:
            state = None
        except RegistryError as exc:
            log.info("drift check of %s on %s failed: %s", prompt, known.key, exc)
            world.poke(world.table.uids_where(endpoint=known.endpoint, prompt=prompt), fresh=False)
            return False
        old = world.snapshots.get(snapshot_key(client, prompt))
        world.snapshots[snapshot_key(client, prompt)] = Snapshot(state, time.monotonic())
        if old is None or _aliases(old.state) != _aliases(state):
            world.poke(world.table.uids_where(endpoint=known.endpoint, prompt=prompt), fresh=False)
    return True


def _aliases(state: Any) -> Any:
    return None if state is None else (state.aliases, state.tags)


async def _registry_daemon(
    kind: RegistryKind, body: kopf.Body, stopped: kopf.DaemonStopped, world: World
) -> None:
    while not stopped:
        known = _known(kind, body)
        if known is None:
            await stopped.wait(DEFAULT_CHECK_S)
            continue
        interval = parse_duration(known.spec.refresh_interval)
        started = time.monotonic()
        await _check_registry(world, known, body)
        if interval > 0:
            try:
                if await _poll_prompts(world, known):
                    METRICS.registry_polls[registry_label(known.key)] += 1
            except (InvalidRegistryConfig, RegistryError) as exc:
                log.info("prompt poll on %s failed: %s", known.key, exc)
        wait = interval if interval > 0 else DEFAULT_CHECK_S * 10
        elapsed = time.monotonic() - started
        trigger = world.poll_trigger(known.endpoint)
        waiter = asyncio.ensure_future(trigger.wait())
        stopper = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait(
                {waiter, stopper}, timeout=max(0.0, wait - elapsed), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            stopper.cancel()
        trigger.clear()


@kopf.daemon(GROUP, VERSION, PromptRegistry.PLURAL, cancellation_timeout=5.0, when=in_scope)
async def prompt_registry_daemon(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    await _registry_daemon(RegistryKind.PROMPT_REGISTRY, body, stopped, memo.world)


@kopf.daemon(GROUP, VERSION, ClusterPromptRegistry.PLURAL, cancellation_timeout=5.0)
async def cluster_prompt_registry_daemon(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    await _registry_daemon(RegistryKind.CLUSTER_PROMPT_REGISTRY, body, stopped, memo.world)
