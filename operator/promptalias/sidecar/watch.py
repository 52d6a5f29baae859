"""A small list+watch of ConfigMaps over aiohttp (what client-go's reflector does, minus the weight).

- list (paged), then watch from the list's resourceVersion with bookmarks; resume from the last seen
  resourceVersion after a clean end or a dropped connection;
- 410 Gone (HTTP status or an ERROR event) means our resourceVersion was compacted: relist;
- errors back off exponentially (0.2 s → 10 s, with jitter);
- every byte from the apiserver counts as contact; the server ends each watch after `timeout_seconds`
  and a silent connection is dropped after `timeout_seconds + read_grace`, so a dead TCP stream can
  never pass for a quiet namespace (the health check reads `last_contact`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from promptalias.sidecar.kubeconfig import KubeConnection

logger = logging.getLogger("promptalias.sidecar")

ConfigMap = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


class _Gone(Exception):  # noqa: N818 -- control flow: the resourceVersion is too old
    pass


@dataclass
class WatchStatus:
    """What /healthz, /readyz and /metrics read about one watch."""

    name: str
    synced: bool = False
    last_contact: float | None = None  # time.monotonic() of the last byte or response from the apiserver
    last_error: str | None = None
    events: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    relists: int = 0
    resource_version: str = ""
    dead: bool = False

    def contact(self) -> None:
        self.last_contact = time.monotonic()

    def count_restart(self, reason: str) -> None:
        self.restarts[reason] = self.restarts.get(reason, 0) + 1


class Handler:
    """What the watch reports to: a full listing of its scope, and single events."""

    async def listed(self, watch: ConfigMapWatch, items: list[ConfigMap]) -> None:
        raise NotImplementedError

    async def event(self, watch: ConfigMapWatch, kind: str, obj: ConfigMap) -> None:
        raise NotImplementedError


class ConfigMapWatch:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        connection: KubeConnection,
        namespace: str,
        handler: Handler,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 60,
        read_grace: float = 15.0,
        name: str = "",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.session = session
        self.connection = connection
        self.namespace = namespace
        self.handler = handler
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.timeout_seconds = max(1, int(timeout_seconds))
        self.read_grace = read_grace
        self.status = WatchStatus(name=name or field_selector or label_selector or "all")
        self._sleep = sleep
        self._established = False

    @property
    def url(self) -> str:
        return f"{self.connection.server}/api/v1/namespaces/{self.namespace}/configmaps"

    def _params(self, **extra: str) -> dict[str, str]:
        params = dict(extra)
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        return params

    def _request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headers": self.connection.headers(), "ssl": self.connection.ssl_context}
        if self.connection.server_hostname:
            kwargs["server_hostname"] = self.connection.server_hostname
        return kwargs

    async def run(self) -> None:
        """List and watch until cancelled. Never gives up: errors back off and retry."""
        backoff = 0.2
        need_list = True
        while True:
            self._established = False
            started = time.monotonic()
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch()
                # A clean end (the server's timeoutSeconds): resume from the last resourceVersion.
                self.status.count_restart("closed")
                backoff = 0.2
                if time.monotonic() - started < 1.0:
                    await self._sleep(0.2)  # a server that closes at once must not make us spin
            except _Gone:
                self.status.count_restart("gone")
                logger.info(
                    "watch %s: resourceVersion %s expired; relisting",
                    self.status.name,
                    self.status.resource_version,
                )
                need_list = True
            except (aiohttp.ClientError, TimeoutError, ApiError, ValueError, OSError) as exc:
                self.status.count_restart("error")
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                if self._established:
                    backoff = 0.2  # it worked until now: retry soon
                logger.warning(
                    "watch %s failed: %s; retrying in %.1f s",
                    self.status.name,
                    self.status.last_error,
                    backoff,
                )
                await self._sleep(backoff * random.uniform(0.8, 1.2))  # noqa: S311 -- jitter, not crypto
                backoff = min(backoff * 2, 10.0)
                # need_list stays as it was: with a resourceVersion in hand the watch simply resumes.

    async def _list(self) -> None:
        items: list[ConfigMap] = []
        cont = ""
        resource_version = ""
        timeout = aiohttp.ClientTimeout(total=30)
        while True:
            params = self._params(limit="500")
            if cont:
                params["continue"] = cont
            async with self.session.get(
                self.url, params=params, timeout=timeout, **self._request_kwargs()
            ) as resp:
                body = await resp.read()
                if resp.status == 410 and cont:
                    raise _Gone  # the continue token expired mid-list: start over
                if resp.status != 200:
                    # 401/403 are answers, not contact: a watch we may not run is as dead as a lost one.
                    raise ApiError(resp.status, _message(body))
                self.status.contact()
                page = json.loads(body)
            items.extend(page.get("items") or [])
            metadata = page.get("metadata") or {}
            resource_version = metadata.get("resourceVersion", "")
            cont = metadata.get("continue") or ""
            if not cont:
                break
        self.status.relists += 1
        self.status.resource_version = resource_version
        await self.handler.listed(self, items)
        self.status.synced = True
        self.status.last_error = None

    async def _watch(self) -> None:
        params = self._params(
            watch="1",
            resourceVersion=self.status.resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(self.timeout_seconds),
        )
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=self.timeout_seconds + self.read_grace
        )
        async with self.session.get(
            self.url, params=params, timeout=timeout, **self._request_kwargs()
        ) as resp:
            if resp.status == 410:
                raise _Gone
            if resp.status != 200:
                raise ApiError(resp.status, _message(await resp.read()))
            self.status.contact()
            self.status.last_error = None
            self._established = True
            async for line in _lines(resp):
                self.status.contact()
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise ApiError(int(obj.get("code") or 500), str(obj.get("message")))
                self.status.events[str(kind)] = self.status.events.get(str(kind), 0) + 1
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    await self.handler.event(self, str(kind), obj)
                if version:
                    self.status.resource_version = version


async def _lines(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    # Not resp.content's line iterator: its 64 KiB line limit is far below a 1 MiB ConfigMap.
    buffer = bytearray()
    async for chunk in resp.content.iter_any():
        buffer.extend(chunk)
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                yield line
    if buffer.strip():
        yield bytes(buffer)


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message"))
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")
