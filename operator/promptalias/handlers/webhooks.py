"""MLflow prompt-alias webhooks: register them for registries that ask, receive and verify them.

Receiver: with PROMPTALIAS_WEBHOOK_LISTEN=host:port (`promptalias operator --mlflow-webhook-listen`),
an aiohttp server on this loop answers `POST /mlflow/webhook/<namespace>/<registry>` (or
`/mlflow/webhook/_cluster/<registry>` for a ClusterPromptRegistry). The path names the registry,
whose `spec.webhook.secretRef` holds the HMAC secret. A genuine `prompt_alias.created|deleted` for
a prompt in use triggers one read of that prompt; when its aliases moved, the PromptAlias workers
(and experiments) of that prompt are woken with the fresh snapshot, so an out-of-band move is
corrected (or followed) within milliseconds. The periodic check (refreshInterval) stays the
safety net: MLflow does not replay deliveries missed while the operator was down.

Registration: with PROMPTALIAS_WEBHOOK_URL (`--mlflow-webhook-url`, the base URL through which
MLflow reaches the receiver, ending in /mlflow/webhook), each registry with `spec.webhook.enabled`
gets one webhook in MLflow, named after the cluster and the registry, created or updated only when
its URL or secret changed (checked every minute, fully re-listed every ten), and removed when the
webhook is disabled or the registry deleted. Without the URL the operator never touches MLflow
webhooks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import kopf
from aiohttp import web

from promptalias.api.promptalias import RegistryKind
from promptalias.api.registry import ClusterPromptRegistry, PromptRegistry
from promptalias.api.types import GROUP, VERSION
from promptalias.handlers.experiments import poke_experiments_for_prompt
from promptalias.handlers.registries import _known
from promptalias.handlers.scope import in_scope
from promptalias.handlers.state import InvalidRegistryConfig, Snapshot, World, snapshot_key
from promptalias.kube import KubeError, NotFound
from promptalias.reconcile.registry import KnownRegistry, RegistryKey
from promptalias.registry import PromptNotFound, PromptState, RegistryError
from promptalias.registry.webhooks import (
    DeliveryRejected,
    DesiredWebhook,
    ReplayGuard,
    WebhookAPI,
    desired_webhook,
    ensure_webhook,
    parse_delivery,
    verify_delivery,
    webhook_name,
)

log = logging.getLogger(__name__)

LISTEN_ENV = "PROMPTALIAS_WEBHOOK_LISTEN"
URL_ENV = "PROMPTALIAS_WEBHOOK_URL"
PATH_PREFIX = "/mlflow/webhook"
CLUSTER_SCOPE = "_cluster"  # namespaces never start with "_", so this path segment is unambiguous
MAX_BODY_BYTES = 64 * 1024
SECRET_TTL_S = 30.0
SECRET_REREAD_ON_FAILURE_S = 2.0
# MLflow keeps signing with the old secret until the registration catches up (up to CHECK_S) and
# its webhook cache expires (MLFLOW_WEBHOOK_CACHE_TTL, 60 s): accept the old one meanwhile.
ROTATION_GRACE_S = 300.0
CHECK_S = 60.0  # how often the registration is compared with the spec and the Secret
FULL_CHECK_S = 600.0  # how often MLflow's list is read even when nothing seems to have changed
MAX_BACKOFF_S = 300.0
REMOVE_TIMEOUT_S = 10.0


# ---- receiver ------------------------------------------------------------------------------------


@dataclass
class _Secret:
    value: str
    fetched: float
    previous: str | None = None  # the value before a rotation, accepted for ROTATION_GRACE_S
    previous_until: float = 0.0

    def candidates(self, now: float) -> list[str]:
        return [self.value] + ([self.previous] if self.previous and now < self.previous_until else [])


@dataclass
class Receiver:
    """The HTTP receiver's state: replay guard, secret cache, in-flight prompt refreshes, counters."""

    world: World
    memo: Any
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    secrets: dict[RegistryKey, _Secret] = field(default_factory=dict)
    inflight: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    again: set[tuple[str, str]] = field(default_factory=set)
    accepted: int = 0
    ignored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    runner: web.AppRunner | None = None

    # ---- HTTP ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(PATH_PREFIX + "/{scope}/{name}", self.deliver)
        app.router.add_get(PATH_PREFIX + "/healthz", self.healthz)
        return app

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"accepted": self.accepted, "ignored": self.ignored, "rejected": dict(self.rejected)}
        )

    async def deliver(self, request: web.Request) -> web.Response:
        scope, name = request.match_info["scope"], request.match_info["name"]
        key = (
            RegistryKey(RegistryKind.CLUSTER_PROMPT_REGISTRY, None, name)
            if scope == CLUSTER_SCOPE
            else RegistryKey(RegistryKind.PROMPT_REGISTRY, scope, name)
        )
        known = self.world.registries.get(key)
        webhook = known.spec.webhook if known is not None else None
        if known is None or webhook is None or not webhook.enabled or webhook.secret_ref is None:
            return self._reject(404, "UnknownRegistry", f"no {key} with spec.webhook.enabled at this path")
        body = await request.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return self._reject(413, "TooLarge", f"deliveries are at most {MAX_BODY_BYTES} bytes")
        headers = dict(request.headers)
        try:
            secret = await self._secret(known)
            try:
                self._verify(secret, headers, body)
            except DeliveryRejected as exc:
                # The Secret may have been rotated moments ago: read it again once before refusing.
                if exc.status != 401 or time.monotonic() - secret.fetched < SECRET_REREAD_ON_FAILURE_S:
                    raise
                secret = await self._secret(known, force=True)
                self._verify(secret, headers, body)
            event = parse_delivery(body)
        except DeliveryRejected as exc:
            log.warning(
                "rejected MLflow webhook delivery for %s from %s: %s", key, request.remote, exc.message
            )
            return self._reject(exc.status, exc.reason, exc.message)
        except InvalidRegistryConfig as exc:
            return self._reject(503, "SecretUnavailable", str(exc))
        if event is None:
            self.ignored += 1
            return web.json_response({"status": "ignored"})
        self.accepted += 1
        log.info(
            "MLflow webhook: alias %s of prompt %s %s%s on %s",
            event.alias,
            event.prompt,
            event.action,
            f" (version {event.version})" if event.version is not None else "",
            key,
        )
        self._schedule(known, event.prompt)
        return web.json_response({"status": "accepted"})

    def _verify(self, secret: _Secret, headers: Mapping[str, str], body: bytes) -> None:
        values = secret.candidates(time.monotonic())
        for value in values[:-1]:
            try:
                verify_delivery(value, headers, body, guard=self.guard)
                return
            except DeliveryRejected as exc:
                if exc.status != 401:
                    raise
        verify_delivery(values[-1], headers, body, guard=self.guard)

    def _reject(self, status: int, reason: str, message: str) -> web.Response:
        self.rejected[reason] += 1
        return web.json_response({"error": reason, "message": message}, status=status)

    async def _secret(self, known: KnownRegistry, *, force: bool = False) -> _Secret:
        cached = self.secrets.get(known.key)
        if cached is not None and not force and time.monotonic() - cached.fetched < SECRET_TTL_S:
            return cached
        return self.note_secret(known.key, await read_webhook_secret(self.world, known))

    def note_secret(self, key: RegistryKey, value: str) -> _Secret:
        """Cache a secret value just read (here, or by the registration before MLflow gets it)."""
        cached = self.secrets.get(key)
        now = time.monotonic()
        secret = _Secret(value, now)
        if cached is not None and cached.value != value:
            secret.previous, secret.previous_until = cached.value, now + ROTATION_GRACE_S
        elif cached is not None:
            secret.previous, secret.previous_until = cached.previous, cached.previous_until
        self.secrets[key] = secret
        return secret

    # ---- refresh -------------------------------------------------------------------------------

    def _schedule(self, known: KnownRegistry, prompt: str) -> None:
        key = (known.endpoint, prompt)
        if key in self.inflight:
            self.again.add(key)  # one more read after this one, so a later move is never missed
            return
        task = asyncio.create_task(self._refresh(known, prompt))
        self.inflight[key] = task

        def done(_: asyncio.Task[None]) -> None:
            self.inflight.pop(key, None)
            if key in self.again:
                self.again.discard(key)
                self._schedule(known, prompt)

        task.add_done_callback(done)

    async def _refresh(self, known: KnownRegistry, prompt: str) -> None:
        world = self.world
        uids = world.uids_where(endpoint=known.endpoint, prompt=prompt)
        if not uids:
            return  # not a prompt this cluster uses (experiments use their baseline's prompt)
        try:
            client = await world.client(known)
            try:
                state: PromptState | None = await client.get_prompt(prompt)
            except PromptNotFound:
                state = None
        except (InvalidRegistryConfig, RegistryError) as exc:
            log.info("webhook refresh of %s failed (%s); asking the poller to read now", prompt, exc)
            world.poll_trigger(known.endpoint).set()
            return
        key = snapshot_key(client, prompt)
        old = world.snapshots.get(key)
        world.snapshots[key] = Snapshot(state, time.monotonic())
        if old is None or _aliases(old.state) != _aliases(state):
            world.poke(uids, fresh=False)
            poke_experiments_for_prompt(self.memo, known.endpoint, prompt)

    async def close(self) -> None:
        for task in list(self.inflight.values()):
            task.cancel()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def _aliases(state: PromptState | None) -> Any:
    return None if state is None else (state.aliases, state.tags)


async def read_webhook_secret(world: World, known: KnownRegistry) -> str:
    """The HMAC secret of a registry's webhook (never logged). Raises InvalidRegistryConfig."""
    webhook = known.spec.webhook
    if webhook is None or webhook.secret_ref is None:
        raise InvalidRegistryConfig(f"{known.key} has no spec.webhook.secretRef")
    ref = webhook.secret_ref
    namespace = ref.namespace or known.key.namespace or ""
    try:
        _, data = await world.kube.read_secret(namespace, ref.name)
    except NotFound:
        raise InvalidRegistryConfig(f"webhook Secret {namespace}/{ref.name} does not exist") from None
    except KubeError as exc:
        raise InvalidRegistryConfig(f"cannot read webhook Secret {namespace}/{ref.name} ({exc})") from None
    raw = data.get(ref.key)
    if raw is None:
        raise InvalidRegistryConfig(f"webhook Secret {namespace}/{ref.name} has no key {ref.key!r}")
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidRegistryConfig(
            f"webhook Secret {namespace}/{ref.name} key {ref.key!r} is not UTF-8"
        ) from None
    if not value:
        raise InvalidRegistryConfig(f"webhook Secret {namespace}/{ref.name} key {ref.key!r} is empty")
    return value


def _split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{LISTEN_ENV}={value!r}: write it as HOST:PORT, e.g. 0.0.0.0:8719")
    return host.strip("[]"), int(port)


@kopf.on.startup()
async def start_receiver(memo: kopf.Memo, **_: Any) -> None:
    listen = os.environ.get(LISTEN_ENV)
    url = os.environ.get(URL_ENV)
    world: World | None = getattr(memo, "world", None)
    if world is None:
        raise kopf.TemporaryError("the operator's shared state is not ready yet", delay=0.1)
    memo.webhook_wake = {}
    if url and not url.rstrip("/").endswith(PATH_PREFIX):
        log.warning(
            "%s=%s does not end in %s: MLflow will call <url>/<namespace>/<registry>, so make sure a "
            "proxy maps it to the receiver's %s/<namespace>/<registry>",
            URL_ENV,
            url,
            PATH_PREFIX,
            PATH_PREFIX,
        )
    if not listen:
        if url:
            log.warning(
                "%s is set but %s is not: webhooks are registered but received nowhere", URL_ENV, LISTEN_ENV
            )
        return
    host, port = _split_listen(listen)
    receiver = Receiver(world, memo)
    runner = web.AppRunner(receiver.app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise RuntimeError(
            f"cannot receive MLflow webhooks on {listen}: {exc}; free the port or change it"
        ) from exc
    receiver.runner = runner
    memo.webhook_receiver = receiver
    log.info("receiving MLflow webhooks on http://%s:%d%s/<namespace>/<registry>", host, port, PATH_PREFIX)


@kopf.on.cleanup()
async def stop_receiver(memo: kopf.Memo, **_: Any) -> None:
    receiver: Receiver | None = getattr(memo, "webhook_receiver", None)
    if receiver is not None:
        await receiver.close()


# ---- registration --------------------------------------------------------------------------------


def webhook_url(base: str, key: RegistryKey) -> str:
    """The URL MLflow calls for one registry: <base>/<namespace>/<name> or <base>/_cluster/<name>."""
    scope = key.namespace if key.namespace is not None else CLUSTER_SCOPE
    return f"{base.rstrip('/')}/{quote(scope, safe='')}/{quote(key.name, safe='')}"


def _wake(memo: Any, key: RegistryKey) -> asyncio.Event:
    wakes: dict[RegistryKey, asyncio.Event] | None = getattr(memo, "webhook_wake", None)
    if wakes is None:
        wakes = {}
        memo.webhook_wake = wakes
    return wakes.setdefault(key, asyncio.Event())


def _event_key(kind: RegistryKind, event: kopf.RawEvent) -> RegistryKey:
    meta = event["object"].get("metadata", {})
    namespace = meta.get("namespace") if kind == RegistryKind.PROMPT_REGISTRY else None
    return RegistryKey(kind, namespace, str(meta.get("name")))


@kopf.on.event(GROUP, VERSION, PromptRegistry.PLURAL, when=in_scope)
async def prompt_registry_webhook_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, _event_key(RegistryKind.PROMPT_REGISTRY, event)).set()


@kopf.on.event(GROUP, VERSION, ClusterPromptRegistry.PLURAL)
async def cluster_prompt_registry_webhook_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _wake(memo, _event_key(RegistryKind.CLUSTER_PROMPT_REGISTRY, event)).set()


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
    meta = body.get("metadata", {})
    key = RegistryKey(
        kind, meta.get("namespace") if kind == RegistryKind.PROMPT_REGISTRY else None, str(meta.get("name"))
    )
    if not base:
        known = _known(kind, body)
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
            known = _known(kind, body)
            delay = CHECK_S
            if known is not None:
                try:
                    await _register_once(world, memo, known, base, body, reg)
                    reg.failures, reg.last_problem = 0, None
                except (InvalidRegistryConfig, RegistryError) as exc:
                    reg.failures += 1
                    delay = min(MAX_BACKOFF_S, 5.0 * 2 ** min(reg.failures, 6))
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
    known = _known(kind, body)
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
