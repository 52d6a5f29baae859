"""MLflow webhook registration: one webhook in MLflow per registry with `spec.webhook.enabled`.

With PROMPTALIAS_WEBHOOK_URL (`--mlflow-webhook-url`, the base URL through which MLflow reaches the
receiver, ending in /mlflow/webhook), each such registry gets one webhook in MLflow, named after the
cluster and the registry, created or updated only when its URL or secret changed (checked every
minute, fully re-listed every ten), and removed when the webhook is disabled or the registry
deleted. Without the URL the operator never touches MLflow webhooks. The receiver
(handlers/webhook_receiver.py) learns a rotated secret from here before MLflow signs with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from promptalias.api.promptalias import RegistryKind
from promptalias.api.registry import ClusterPromptRegistry, PromptRegistry
from promptalias.api.types import GROUP, VERSION
from promptalias.handlers.registries import parse_registry
from promptalias.handlers.scope import in_scope
from promptalias.handlers.state import InvalidRegistryConfig, World
from promptalias.handlers.webhook_receiver import URL_ENV, Receiver, read_webhook_secret
from promptalias.reconcile.backoff import backoff
from promptalias.reconcile.registry import KnownRegistry, RegistryKey, key_of
from promptalias.reconcile.webhook_route import webhook_url
from promptalias.registry import RegistryError
from promptalias.registry.webhooks import (
    DesiredWebhook,
    WebhookAPI,
    desired_webhook,
    ensure_webhook,
    webhook_name,
)

log = logging.getLogger(__name__)

CHECK_S = 60.0  # how often the registration is compared with the spec and the Secret
FULL_CHECK_S = 600.0  # how often MLflow's list is read even when nothing seems to have changed
MAX_BACKOFF_S = 300.0
REMOVE_TIMEOUT_S = 10.0


def _wake(memo: Any, key: RegistryKey) -> asyncio.Event:
    wakes: dict[RegistryKey, asyncio.Event] | None = getattr(memo, "webhook_wake", None)
    if wakes is None:
        wakes = {}
        memo.webhook_wake = wakes
    return wakes.setdefault(key, asyncio.Event())


@kopf.on.event(GROUP, VERSION, PromptRegistry.PLURAL, when=in_scope)
async def prompt_registry_webhook_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, key_of(RegistryKind.PROMPT_REGISTRY, event["object"].get("metadata", {}))).set()


@kopf.on.event(GROUP, VERSION, ClusterPromptRegistry.PLURAL)
async def cluster_prompt_registry_webhook_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, key_of(RegistryKind.CLUSTER_PROMPT_REGISTRY, event["object"].get("metadata", {}))).set()


@dataclass
class _Registration:
    """What the daemon last made true in MLflow, to skip work when nothing changed."""

    state: tuple[Any, ...] | None = None
    checked: float = 0.0
    failures: int = 0
    last_problem: str | None = None
    registered: bool = False


async def _desired(world: World, memo: Any, known: KnownRegistry, base: str) -> DesiredWebhook | None:
    webhook = known.spec.webhook
    if webhook is None or not webhook.enabled:
        return None
    secret = await read_webhook_secret(world, known)
    receiver: Receiver | None = getattr(memo, "webhook_receiver", None)
    if receiver is not None:
        # The receiver learns a rotated secret before MLflow signs with it.
        receiver.note_secret(known.key, secret)
    return desired_webhook(
        cluster=world.cluster, registry=str(known.key), url=webhook_url(base, known.key), secret=secret
    )


async def _register_once(
    world: World, memo: Any, known: KnownRegistry, base: str, body: kopf.Body, reg: _Registration
) -> None:
    desired = await _desired(world, memo, known, base)
    state = (known.uid, known.generation, desired.fingerprint if desired else None)
    due = time.monotonic() - reg.checked >= FULL_CHECK_S
    if state == reg.state and not (due and desired is not None):
        return
    name = webhook_name(world.cluster, str(known.key))
    if desired is None:
        reg.state = state
        if known.spec.webhook is None and not reg.registered:
            return  # never asked for: leave MLflow alone (it may not even support webhooks)
        # Disabled (or removed since we registered it): remove ours once per change, quietly.
        try:
            result = await ensure_webhook(WebhookAPI(await world.client(known)), name, None)
        except (InvalidRegistryConfig, RegistryError) as exc:
            log.info("%s: could not check for a stale MLflow webhook: %s", known.key, exc)
            return
        reg.registered = False
        if result.action == "deleted":
            kopf.event(body, type="Normal", reason="WebhookRemoved", message=f"MLflow webhook {name} removed")
        return
    api = WebhookAPI(await world.client(known))
    result = await ensure_webhook(api, name, desired)
    reg.state, reg.checked, reg.registered = state, time.monotonic(), True
    if result.action in ("created", "updated"):
        kopf.event(
            body,
            type="Normal",
            reason="WebhookRegistered" if result.action == "created" else "WebhookUpdated",
            message=f"MLflow webhook {result.webhook_id} ({name}) calls {desired.url} on prompt_alias "
            "created/deleted",
        )
        outcome = await api.test(str(result.webhook_id))
        if not outcome.get("success"):
            problem = (
                f"MLflow could not deliver a test event to {desired.url}: "
                f"{outcome.get('error_message') or outcome.get('response_status')} "
                f"{str(outcome.get('response_body') or '')[:200]}; check that MLflow reaches the operator "
                "at that URL and that both use the same secret"
            )
            kopf.event(body, type="Warning", reason="WebhookUnreachable", message=problem)
            log.warning("%s: %s", known.key, problem)
    log.info("MLflow webhook of %s: %s", known.key, result.action)


async def _webhook_daemon(
    kind: RegistryKind, body: kopf.Body, stopped: kopf.DaemonStopped, memo: Any
) -> None:
    base = os.environ.get(URL_ENV)
    world: World = memo.world
    key = key_of(kind, body.get("metadata", {}))
    if not base:
        known = parse_registry(kind, body)
        if known is not None and known.spec.webhook is not None and known.spec.webhook.enabled:
            kopf.event(
                body,
                type="Warning",
                reason="WebhookNotRegistered",
                message="spec.webhook is enabled but the operator runs without --mlflow-webhook-url "
                f"({URL_ENV}); only the periodic check (refreshInterval) detects changes",
            )
        await stopped.wait()
        return
    reg = _Registration()
    wake = _wake(memo, key)
    try:
        while not stopped:
            wake.clear()
            known = parse_registry(kind, body)
            delay = CHECK_S
            if known is not None:
                try:
                    await _register_once(world, memo, known, base, body, reg)
                    reg.failures, reg.last_problem = 0, None
                except (InvalidRegistryConfig, RegistryError) as exc:
                    reg.failures += 1
                    delay = backoff(reg.failures, base=5.0, cap=MAX_BACKOFF_S)
                    problem = f"cannot register the MLflow webhook: {exc}"
                    if problem != reg.last_problem:
                        kopf.event(body, type="Warning", reason="WebhookRegistrationFailed", message=problem)
                        reg.last_problem = problem
                    log.warning("%s: %s (retrying in %.0fs)", key, problem, delay)
            waiter = asyncio.ensure_future(wake.wait())
            stopper = asyncio.ensure_future(stopped.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()
    finally:
        if stopped.reason is not None and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
            await _remove_on_deletion(world, kind, body, key)


async def _remove_on_deletion(
    world: World, kind: RegistryKind, body: Mapping[str, Any], key: RegistryKey
) -> None:
    """Best effort: the registry is gone, so is its webhook (the Secret may be gone too)."""
    known = parse_registry(kind, body)
    if known is None or known.spec.webhook is None:
        return
    try:
        async with asyncio.timeout(REMOVE_TIMEOUT_S):
            client = await world.client(known)
            result = await ensure_webhook(WebhookAPI(client), webhook_name(world.cluster, str(key)), None)
            log.info("registry %s deleted: MLflow webhook %s", key, result.action)
    except (TimeoutError, InvalidRegistryConfig, RegistryError) as exc:
        log.warning("registry %s deleted, but its MLflow webhook could not be removed: %s", key, exc)


@kopf.daemon(GROUP, VERSION, PromptRegistry.PLURAL, cancellation_timeout=REMOVE_TIMEOUT_S + 5, when=in_scope)
async def prompt_registry_webhook(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    await _webhook_daemon(RegistryKind.PROMPT_REGISTRY, body, stopped, memo)


@kopf.daemon(GROUP, VERSION, ClusterPromptRegistry.PLURAL, cancellation_timeout=REMOVE_TIMEOUT_S + 5)
async def cluster_prompt_registry_webhook(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    await _webhook_daemon(RegistryKind.CLUSTER_PROMPT_REGISTRY, body, stopped, memo)
