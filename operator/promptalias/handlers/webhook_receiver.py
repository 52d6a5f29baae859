"""The MLflow webhook receiver: verify a delivery, then read the prompt it names and wake workers.

With PROMPTALIAS_WEBHOOK_LISTEN=host:port (`promptalias operator --mlflow-webhook-listen`), an aiohttp
server on this loop answers `POST /mlflow/webhook/<namespace>/<registry>` (or
`/mlflow/webhook/_cluster/<registry>` for a ClusterPromptRegistry). The path names the registry,
whose `spec.webhook.secretRef` holds the HMAC secret. A genuine `prompt_alias.created|deleted` for
a prompt in use triggers one read of that prompt; when its aliases moved, the PromptAlias workers
(and experiments) of that prompt are woken with the fresh snapshot. The periodic check
(refreshInterval) stays the safety net: MLflow does not replay deliveries missed while the operator
was down.

The port faces MLflow, and whatever else can reach it. So: the whole body is read (not only what
arrived first), within `BODY_TIMEOUT_S`; a connection must send its request headers within
`HEADER_TIMEOUT_S`; at most `MAX_CONNECTIONS` connections are open at once (more are closed at
once); a header that is not UTF-8 is a 400; a burst of bad signatures costs one Secret read
(`reconcile/webhook_secret.py` decides, and concurrent reads share one request). Serve it on
127.0.0.1 or a pod IP behind TLS (a Service, an Ingress or a mesh), never bare on 0.0.0.0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web

from promptalias.handlers.experiments import poke_experiments_for_prompt
from promptalias.handlers.state import InvalidRegistryConfig, World, store_snapshot
from promptalias.kube import KubeError, NotFound
from promptalias.reconcile.registry import KnownRegistry, RegistryKey
from promptalias.reconcile.webhook_route import PATH_PREFIX, route_key, split_listen
from promptalias.reconcile.webhook_secret import SecretState, observe
from promptalias.registry import PromptNotFound, PromptState, RegistryError
from promptalias.registry.webhooks import (
    DeliveryRejected,
    ReplayGuard,
    parse_delivery,
    verify_delivery,
)

log = logging.getLogger(__name__)

LISTEN_ENV = "PROMPTALIAS_WEBHOOK_LISTEN"
URL_ENV = "PROMPTALIAS_WEBHOOK_URL"
MAX_BODY_BYTES = 64 * 1024
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 64


@dataclass
class Receiver:
    """The HTTP receiver's state: replay guard, secret cache, in-flight prompt refreshes, counters."""

    world: World
    memo: Any
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    secrets: dict[RegistryKey, SecretState] = field(default_factory=dict)
    secret_reads: dict[RegistryKey, asyncio.Task[SecretState]] = field(default_factory=dict)
    inflight: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    again: set[tuple[str, str]] = field(default_factory=set)
    accepted: int = 0
    ignored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    runner: web.AppRunner | None = None
    server: asyncio.Server | None = None
    connections: int = 0
    refused_connections: int = 0

    # ---- HTTP ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._mark_request])
        app.router.add_post(PATH_PREFIX + "/{scope}/{name}", self.deliver)
        app.router.add_get(PATH_PREFIX + "/healthz", self.healthz)
        return app

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "accepted": self.accepted,
                "ignored": self.ignored,
                "rejected": dict(self.rejected),
                "refusedConnections": self.refused_connections,
            }
        )

    @web.middleware
    async def _mark_request(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The request line and headers arrived: the connection's header deadline is met."""
        if request.transport is not None:
            _Guard.headers_received(request.transport)
        return await handler(request)

    async def serve(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port) with the connection guard; the bound port."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        handler_factory = runner.server
        assert handler_factory is not None

        def guarded() -> asyncio.Protocol:
            return _Guard(self, handler_factory())

        try:
            self.server = await asyncio.get_running_loop().create_server(guarded, host, port)
        except OSError:
            await runner.cleanup()
            raise
        self.runner = runner
        bound: int = self.server.sockets[0].getsockname()[1]
        return bound

    async def deliver(self, request: web.Request) -> web.Response:
        scope, name = request.match_info["scope"], request.match_info["name"]
        key = route_key(scope, name)
        known = self.world.registries.get(key)
        webhook = known.spec.webhook if known is not None else None
        if known is None or webhook is None or not webhook.enabled or webhook.secret_ref is None:
            return self._reject(404, "UnknownRegistry", f"no {key} with spec.webhook.enabled at this path")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return self._reject(413, "TooLarge", f"deliveries are at most {MAX_BODY_BYTES} bytes")
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                body = await _read_all(request, MAX_BODY_BYTES)
        except TimeoutError:
            return self._reject(408, "SlowBody", f"the body did not arrive within {BODY_TIMEOUT_S:g} s")
        if body is None:
            return self._reject(413, "TooLarge", f"deliveries are at most {MAX_BODY_BYTES} bytes")
        headers = dict(request.headers)
        try:
            secret = await self._secret(known)
            try:
                self._verify(secret, headers, body)
            except DeliveryRejected as exc:
                # The Secret may have been rotated moments ago: read it again once before refusing.
                if exc.status != 401 or not secret.may_reread(time.monotonic()):
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

    def _verify(self, secret: SecretState, headers: Mapping[str, str], body: bytes) -> None:
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

    async def _secret(self, known: KnownRegistry, *, force: bool = False) -> SecretState:
        cached = self.secrets.get(known.key)
        if cached is not None and (
            cached.fresh(time.monotonic()) if not force else not cached.may_reread(time.monotonic())
        ):
            return cached
        # Concurrent deliveries (a burst of bad signatures) share one read of the Secret.
        task = self.secret_reads.get(known.key)
        if task is None:
            task = asyncio.ensure_future(self._read_secret(known))
            self.secret_reads[known.key] = task
            task.add_done_callback(lambda _: self.secret_reads.pop(known.key, None))
        return await asyncio.shield(task)

    async def _read_secret(self, known: KnownRegistry) -> SecretState:
        return self.note_secret(known.key, await read_webhook_secret(self.world, known))

    def note_secret(self, key: RegistryKey, value: str) -> SecretState:
        """Cache a secret value just read (here, or by the registration before MLflow gets it)."""
        secret = observe(self.secrets.get(key), value, time.monotonic())
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
        uids = world.table.uids_where(endpoint=known.endpoint, prompt=prompt)
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
        if store_snapshot(world.snapshots, client, prompt, state):
            world.poke(uids, fresh=False)
            poke_experiments_for_prompt(self.memo, known.endpoint, prompt)

    async def close(self) -> None:
        for task in list(self.inflight.values()):
            task.cancel()
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class _Guard(asyncio.Protocol):
    """In front of aiohttp's request handler: a bound on open connections, and a deadline for the
    first request's headers (aiohttp itself waits for ever on a connection that sends nothing)."""

    _pending: dict[int, asyncio.TimerHandle] = {}  # noqa: RUF012 -- id(transport) -> header deadline

    def __init__(self, receiver: Receiver, inner: Any) -> None:
        self.receiver = receiver
        self.inner = inner
        self.counted = False
        self.transport: asyncio.BaseTransport | None = None

    @classmethod
    def headers_received(cls, transport: asyncio.BaseTransport) -> None:
        timer = cls._pending.pop(id(transport), None)
        if timer is not None:
            timer.cancel()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.receiver.connections >= MAX_CONNECTIONS:
            self.receiver.refused_connections += 1
            transport.close()
            return
        self.receiver.connections += 1
        self.counted = True
        self.transport = transport
        loop = asyncio.get_running_loop()
        self._pending[id(transport)] = loop.call_later(HEADER_TIMEOUT_S, self._too_slow, transport)
        self.inner.connection_made(transport)

    def _too_slow(self, transport: asyncio.BaseTransport) -> None:
        self._pending.pop(id(transport), None)
        self.receiver.rejected["SlowHeaders"] += 1
        transport.close()

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self.inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.counted:
            return
        self.receiver.connections -= 1
        if self.transport is not None:
            self.headers_received(self.transport)
        self.inner.connection_lost(exc)


async def _read_all(request: web.Request, limit: int) -> bytes | None:
    """The whole body (every chunk until EOF), or None when it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


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
    host, port = split_listen(listen, LISTEN_ENV)
    receiver = Receiver(world, memo)
    try:
        await receiver.serve(host, port)
    except OSError as exc:
        raise RuntimeError(
            f"cannot receive MLflow webhooks on {listen}: {exc}; free the port or change it"
        ) from exc
    memo.webhook_receiver = receiver
    log.info("receiving MLflow webhooks on http://%s:%d%s/<namespace>/<registry>", host, port, PATH_PREFIX)


@kopf.on.cleanup()
async def stop_receiver(memo: kopf.Memo, **_: Any) -> None:
    receiver: Receiver | None = getattr(memo, "webhook_receiver", None)
    if receiver is not None:
        await receiver.close()
