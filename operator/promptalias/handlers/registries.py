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
from promptalias.handlers.state import InvalidRegistryConfig, World, store_snapshot
from promptalias.kube import KubeError
from promptalias.reconcile.poll import page_cost, use_search
from promptalias.reconcile.registry import KnownRegistry, key_of, known_registry
from promptalias.reconcile.registry_status import Check, connected, plan_registry_status
from promptalias.registry import PromptNotFound, PromptState, RegistryAuthError, RegistryError

log = logging.getLogger(__name__)

DEFAULT_CHECK_S = 60.0
SEARCH_LIMIT = 100_000  # prompts a drift search reads at most (then the rest are read one by one)


def parse_registry(kind: RegistryKind, body: Mapping[str, Any]) -> KnownRegistry | None:
    """The registry object as the operator keeps it; None (and a warning) when its spec is unusable."""
    try:
        return known_registry(kind, body)
    except ValueError as exc:
        log.warning("ignoring %s %s: %s", kind, body.get("metadata", {}).get("name"), exc)
        return None


def _on_registry_event(kind: RegistryKind, event: kopf.RawEvent, world: World) -> None:
    body = event["object"]
    key = key_of(kind, body.get("metadata", {}))
    before = world.registries.get(key)
    if event["type"] == "DELETED":
        world.registries.pop(key, None)
    else:
        parsed = parse_registry(kind, body)
        if parsed is None:
            world.registries.pop(key, None)
        else:
            world.registries[key] = parsed
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


async def _check_registry(world: World, known: KnownRegistry, body: kopf.Body) -> None:
    """Connectivity + credentials check; writes Ready/serverVersion/lastCheckTime."""
    try:
        client = await world.client(known)
        info = await client.check()
        check = connected(known.spec, info.version, authenticated=info.authenticated)
    except InvalidRegistryConfig as exc:
        check = Check(False, Reason.INVALID_REGISTRY, str(exc))
    except RegistryAuthError as exc:
        check = Check(False, Reason.UNAUTHORIZED, str(exc))
    except RegistryError as exc:
        check = Check(False, Reason.REGISTRY_UNAVAILABLE, str(exc))
    plan = plan_registry_status(
        body.get("status") or {}, check, generation=known.generation, now=datetime.now(UTC)
    )
    if plan.ready_again:
        world.poke(world.table.uids_where(registry=known.key), fresh=True)
    if plan.event is not None:
        kind, reason, message = plan.event
        kopf.event(body, type=kind, reason=reason, message=message)
    plural = (
        PromptRegistry.PLURAL
        if known.key.kind == RegistryKind.PROMPT_REGISTRY
        else ClusterPromptRegistry.PLURAL
    )
    try:
        await world.kube.patch_status(plural, known.key.namespace, known.key.name, plan.status)
    except KubeError as exc:
        log.warning("could not write status of %s: %s", known.key, exc)


async def _poll_prompts(world: World, known: KnownRegistry) -> bool:
    """Read every prompt in use on this endpoint once; wake the workers of prompts that changed.

    One GET per prompt, or, when many prompts are in use, pages of a search of the registry
    (reconcile/poll.py): at 2,000 prompts in use, two requests per resync instead of 2,000. Prompts
    the search does not return (deleted, or not prompts) are read one by one, so both ways say the
    same. True when every prompt was read (a completed poll, `promptalias_registry_polls_total`).
    """
    prompts = {world.aliases[uid].prompt for uid in world.table.uids_where(endpoint=known.endpoint)}
    if not prompts:
        return True
    client = await world.client(known)
    found: dict[str, PromptState] = {}
    if use_search(len(prompts), world.registry_sizes.get(client.identity), page_cost()):
        try:
            everything = await client.search_prompts(limit=SEARCH_LIMIT)
        except RegistryError as exc:
            log.info("drift search on %s failed: %s", known.key, exc)
            world.poke(world.table.uids_where(endpoint=known.endpoint), fresh=False)
            return False
        world.registry_sizes[client.identity] = len(everything)
        METRICS.registry_searches[registry_label(known.key)] += 1
        found = {state.name: state for state in everything if state.name in prompts}
    for prompt in sorted(prompts):
        state: PromptState | None = found.get(prompt)
        if state is None:
            try:
                state = await client.get_prompt(prompt)
            except PromptNotFound:
                state = None
            except RegistryError as exc:
                log.info("drift check of %s on %s failed: %s", prompt, known.key, exc)
                world.poke(world.table.uids_where(endpoint=known.endpoint, prompt=prompt), fresh=False)
                return False
        if store_snapshot(world.snapshots, client, prompt, state):
            world.poke(world.table.uids_where(endpoint=known.endpoint, prompt=prompt), fresh=False)
    return True


async def _registry_daemon(
    kind: RegistryKind, body: kopf.Body, stopped: kopf.DaemonStopped, world: World
) -> None:
    while not stopped:
        known = parse_registry(kind, body)
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
