"""The sidecar process: sources (API watches or a mounted directory) → state → files + HTTP.

    watches ──events──> ProjectionState ──dirty──> writer task ──> DIR (atomic ..data swap)
                                                        └──> published snapshot ──> HTTP (ETag,
                                                             long-poll wakes) + debounced notify

HTTP answers only what has been written, so a client woken by the sidecar finds the files updated.
This module composes the parts: sources.py (watches, directory), trust.py (which ConfigMaps count),
state.py (merging, validation), atomic.py (the directory), snapshot.py (what is published),
http.py (the API), metrics.py (Prometheus text), notify.py (telling the app).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from promptalias.sidecar import metrics as sidecar_metrics
from promptalias.sidecar.atomic import AtomicDirWriter
from promptalias.sidecar.http import HttpApi
from promptalias.sidecar.kubeconfig import KubeConnection
from promptalias.sidecar.metrics import SidecarFigures
from promptalias.sidecar.notify import Notifier, SignalTarget
from promptalias.sidecar.snapshot import Published
from promptalias.sidecar.sources import DirWatch, configmap_watches
from promptalias.sidecar.state import ProjectionState
from promptalias.sidecar.trust import untrusted_reason
from promptalias.sidecar.watch import ConfigMap, ConfigMapWatch, Handler, WatchStatus
from promptalias.stages import stage

logger = logging.getLogger("promptalias.sidecar")

DEFAULT_SELECTOR = "app.kubernetes.io/managed-by=promptalias"
PRELOADED = "~preloaded"  # sorts after every "configmap/…" origin: real ConfigMaps win conflicts


@dataclass
class SidecarConfig:
    namespace: str | None = None
    directory: str | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 8718
    selector: str = DEFAULT_SELECTOR
    names: list[str] = field(default_factory=list)
    notify_url: str | None = None
    notify_signal: SignalTarget | None = None
    notify_debounce: float = 0.25
    from_dir: str | None = None
    poll_interval: float = 0.5
    stale_after: float = 120.0
    watch_timeout: int | None = None
    connection: KubeConnection | None = None


class Sidecar(Handler):
    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self.state = ProjectionState()
        self.writer = AtomicDirWriter(config.directory) if config.directory else None
        self.published = Published()
        self.http = HttpApi(self.published, self.health, self.render_metrics)
        self.started = time.monotonic()
        self.writes = 0
        self.write_errors = 0
        self.last_write: float | None = None
        self.untrusted: dict[str, str] = {}  # origin -> why it is ignored
        self.watches: list[ConfigMapWatch] = []
        self.dir_watch: DirWatch | None = None
        self.notifier: Notifier | None = None
        self._scopes: dict[int, set[str]] = {}
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    @property
    def ready(self) -> bool:
        return self.published.ready

    @property
    def waiting(self) -> int:
        return self.published.waiting

    # ----------------------------------------------------------------------------------------------
    # Sources
    @property
    def statuses(self) -> list[WatchStatus]:
        found = [w.status for w in self.watches]
        if self.dir_watch is not None:
            found.append(self.dir_watch.status)
        return found

    def _trusted(self, obj: ConfigMap) -> bool:
        """Only projections the operator wrote (sidecar/trust.py); others are warned about once."""
        reason = untrusted_reason(obj)
        origin = _origin(obj)
        if reason is None:
            self.untrusted.pop(origin, None)
            return True
        if self.untrusted.get(origin) != reason:
            logger.warning("%s", reason)
        self.untrusted[origin] = reason
        return False

    async def listed(self, watch: ConfigMapWatch, items: list[ConfigMap]) -> None:
        objects = {
            _origin(item): (item.get("data"), str(item.get("metadata", {}).get("resourceVersion", "")))
            for item in items
            if self._trusted(item)
        }
        scope = self._scopes.get(id(watch), set())
        self.state.replace(scope, objects)
        self._scopes[id(watch)] = set(objects)
        if self._all_synced(after=watch):
            self.state.remove(PRELOADED)
        self._dirty.set()  # always: the first listing makes us ready even when nothing changed

    async def event(self, watch: ConfigMapWatch, kind: str, obj: ConfigMap) -> None:
        origin = _origin(obj)
        scope = self._scopes.setdefault(id(watch), set())
        if kind == "DELETED" or not self._trusted(obj):
            if kind == "DELETED":
                self.untrusted.pop(origin, None)
            scope.discard(origin)
            changed = self.state.remove(origin)
        else:
            scope.add(origin)
            version = str(obj.get("metadata", {}).get("resourceVersion", ""))
            changed = self.state.apply(origin, obj.get("data"), version)
            stage("watch", origin, version)
        if changed:
            self._dirty.set()

    def _apply_dir(self, files: dict[str, bytes]) -> None:
        assert self.config.from_dir is not None
        if self.state.apply(f"dir/{self.config.from_dir}", files) or not self.published.ready:
            self._dirty.set()

    def _all_synced(self, after: ConfigMapWatch | None = None) -> bool:
        return all(s.synced or (after is not None and s is after.status) for s in self.statuses)

    def _preload(self) -> None:
        """Serve what an earlier run left in DIR until the first listing says otherwise."""
        if self.writer is None:
            return
        files = self.writer.read_current()
        if files:
            self.state.apply(PRELOADED, files)
            self.published.publish(dict(self.state.merged))
            logger.info(
                "serving %d file(s) from %s until the first sync",
                len(self.published.entries),
                self.writer.directory,
            )

    # ----------------------------------------------------------------------------------------------
    # Writer: coalesces bursts; HTTP and notifications see a snapshot only after it is on disk.
    async def _writer_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            snapshot = dict(self.state.merged)
            if self.writer is not None:
                try:
                    if self.writer.write({key: entry.raw for key, entry in snapshot.items()}):
                        self.writes += 1
                        self.last_write = time.time()
                except OSError as exc:
                    self.write_errors += 1
                    logger.error(  # noqa: TRY400 -- the OSError says it all; no traceback every second
                        "cannot write %s: %s; retrying in 1 s", self.writer.directory, exc
                    )
                    await asyncio.sleep(1.0)
                    self._dirty.set()
                    continue
            changed = {
                key
                for key in snapshot.keys() | self.published.entries.keys()
                if (snapshot.get(key) and snapshot[key].etag)
                != (self.published.entries.get(key) and self.published.entries[key].etag)
            }
            self.published.publish(snapshot)
            if changed:
                for key in sorted(changed):
                    entry = snapshot.get(key)
                    logger.info("%s: %s", key, f"version {entry.version}" if entry else "removed")
                    stage("written", key, entry.version if entry else None)
                if self.notifier is not None and self.published.ready:
                    self.notifier.changed(changed)
            if not self.published.ready and self._all_synced():
                self.published.ready = True
                logger.info("ready: %d prompt file(s) synced", len(snapshot))

    # ----------------------------------------------------------------------------------------------
    # Health
    def health(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        problems: list[str] = []
        sources = []
        for status in self.statuses:
            age = None if status.last_contact is None else now - status.last_contact
            sources.append(
                {
                    "name": status.name,
                    "synced": status.synced,
                    "lastContactSecondsAgo": None if age is None else round(age, 3),
                    "lastError": status.last_error,
                }
            )
            if status.dead:
                problems.append(f"{status.name}: stopped ({status.last_error})")
            elif age is None and now - self.started > self.config.stale_after:
                problems.append(f"{status.name}: no contact since start ({status.last_error})")
            elif age is not None and age > self.config.stale_after:
                problems.append(f"{status.name}: no contact for {age:.0f} s ({status.last_error})")
        body: dict[str, Any] = {"status": "ok" if not problems else "unhealthy", "problems": problems}
        body["sources"] = sources
        body["writeErrors"] = self.write_errors
        return not problems, body

    # ----------------------------------------------------------------------------------------------
    # Metrics
    def render_metrics(self) -> str:
        ok, _ = self.health()
        return sidecar_metrics.render(
            SidecarFigures(
                statuses=self.statuses,
                writes=self.writes,
                write_errors=self.write_errors,
                invalid_documents=self.state.invalid_total,
                untrusted_configmaps=len(self.untrusted),
                prompts=len(self.published.entries),
                ready=self.published.ready,
                healthy=ok,
                long_polls=self.published.waiting,
                notifier=self.notifier,
                http_requests=self.http.requests,
            )
        )

    # ----------------------------------------------------------------------------------------------
    # Lifecycle
    async def start(self) -> None:
        config = self.config
        # No connection cap: each per-name watch holds one long-lived connection.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self._preload()
        if config.from_dir:
            self.dir_watch = DirWatch(config.from_dir, config.poll_interval, self._apply_dir)
        else:
            assert config.connection is not None
            assert config.namespace
            self.watches = configmap_watches(
                self._session,
                config.connection,
                config.namespace,
                self,
                names=config.names,
                selector=config.selector,
                timeout_seconds=config.watch_timeout or max(1, min(300, int(config.stale_after / 2))),
                read_grace=min(30.0, config.stale_after / 2),
            )
        if config.notify_url or config.notify_signal:
            self.notifier = Notifier(
                url=config.notify_url,
                target=config.notify_signal,
                debounce=config.notify_debounce,
                session=self._session,
            )
            self._spawn(self.notifier.run(), None)
        self._spawn(self._writer_loop(), None)
        for watch in self.watches:
            self._spawn(watch.run(), watch.status)
        if self.dir_watch is not None:
            self._spawn(self.dir_watch.run(), self.dir_watch.status)
        self._runner = web.AppRunner(
            self.http.make_app(), access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, config.listen_host, config.listen_port)
        await site.start()
        addresses = self._runner.addresses  # public: the sockets' bound (host, port, ...) tuples
        self.bound_port = int(addresses[0][1]) if addresses else config.listen_port
        source = (
            f"directory {config.from_dir}"
            if config.from_dir
            else (
                f"namespace {config.namespace} via {config.connection.source if config.connection else '?'}"
            )
        )
        logger.info(
            "promptalias sidecar: %s → %s; serving http://%s:%s",
            source,
            config.directory or "(no directory)",
            config.listen_host,
            self.bound_port,
        )

    def _spawn(self, coro: Any, status: WatchStatus | None) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)

        def done(t: asyncio.Task[None]) -> None:
            if t.cancelled():
                return
            exc = t.exception()
            if status is not None:
                status.dead = True
                status.last_error = f"stopped: {exc!r}"
            logger.error("sidecar task %s stopped: %r", t.get_name(), exc, exc_info=exc)

        task.add_done_callback(done)
        self._tasks.append(task)

    async def stop(self) -> None:
        # Answer the waiting long-polls now (304: nothing changed) instead of holding shutdown.
        self.published.stopping = True
        self.published.wake_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


def _origin(obj: ConfigMap) -> str:
    return f"configmap/{obj.get('metadata', {}).get('name')}"
