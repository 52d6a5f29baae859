"""The sidecar process: sources (API watches or a mounted directory) → state → files + HTTP.

    watches ──events──> ProjectionState ──dirty──> writer task ──> DIR (atomic ..data swap)
                                                        └──> published snapshot ──> HTTP (ETag,
                                                             long-poll wakes) + debounced notify

HTTP answers only what has been written, so a client woken by the sidecar finds the files updated.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from promptalias.sidecar.atomic import DATA_LINK, AtomicDirWriter
from promptalias.sidecar.kubeconfig import KubeConnection
from promptalias.sidecar.notify import Notifier, SignalTarget
from promptalias.sidecar.state import Entry, ProjectionState, is_projection_key
from promptalias.sidecar.trust import untrusted_reason
from promptalias.sidecar.watch import ConfigMap, ConfigMapWatch, Handler, WatchStatus

logger = logging.getLogger("promptalias.sidecar")

DEFAULT_SELECTOR = "app.kubernetes.io/managed-by=promptalias"
MAX_WAIT = 300.0
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


class DirWatch:
    """File mode: follows a kubelet-mounted ConfigMap directory by polling its `..data` symlink."""

    def __init__(
        self, directory: str, poll_interval: float, apply: Callable[[dict[str, bytes]], None]
    ) -> None:
        self.directory = directory
        self.poll_interval = poll_interval
        self.apply = apply
        self.status = WatchStatus(name=f"dir {directory}")
        self._signature: object = None

    def _scan_signature(self) -> object:
        try:
            return ("link", os.readlink(os.path.join(self.directory, DATA_LINK)))
        except OSError:
            pass
        entries = []
        with os.scandir(self.directory) as it:  # raises when the directory is missing
            for entry in it:
                if is_projection_key(entry.name):
                    st = entry.stat()
                    entries.append((entry.name, st.st_ino, st.st_size, st.st_mtime_ns))
        return ("stat", tuple(sorted(entries)))

    def _read(self) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for name in sorted(os.listdir(self.directory)):
            if not is_projection_key(name):
                continue
            with contextlib.suppress(OSError), open(os.path.join(self.directory, name), "rb") as handle:
                files[name] = handle.read()
        return files

    async def run(self) -> None:
        while True:
            try:
                signature = self._scan_signature()
                self.status.contact()
                self.status.last_error = None
                if signature != self._signature or not self.status.synced:
                    self._signature = signature
                    self.apply(self._read())
                    self.status.events["SCAN"] = self.status.events.get("SCAN", 0) + 1
                    self.status.synced = True
            except OSError as exc:
                if self.status.last_error is None:
                    logger.warning("cannot read %s: %s", self.directory, exc)
                self.status.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(self.poll_interval)


class Sidecar(Handler):
    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self.state = ProjectionState()
        self.writer = AtomicDirWriter(config.directory) if config.directory else None
        self.published: dict[str, Entry] = {}
        self.index_etag = _index_etag({})
        self.ready = False
        self.started = time.monotonic()
        self.writes = 0
        self.write_errors = 0
        self.last_write: float | None = None
        self.http_requests: dict[tuple[str, int], int] = {}
        self.untrusted: dict[str, str] = {}  # origin -> why it is ignored
        self.waiting = 0
        self.watches: list[ConfigMapWatch] = []
        self.dir_watch: DirWatch | None = None
        self.notifier: Notifier | None = None
        self._scopes: dict[int, set[str]] = {}
        self._dirty = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None
        self._stopping = False

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
        if changed:
            self._dirty.set()

    def _apply_dir(self, files: dict[str, bytes]) -> None:
        assert self.config.from_dir is not None
        if self.state.apply(f"dir/{self.config.from_dir}", files) or not self.ready:
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
            self.published = dict(self.state.merged)
            self.index_etag = _index_etag(self.published)
            logger.info(
                "serving %d file(s) from %s until the first sync", len(self.published), self.writer.directory
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
                for key in snapshot.keys() | self.published.keys()
                if (snapshot.get(key) and snapshot[key].etag)
                != (self.published.get(key) and self.published[key].etag)
            }
            self._publish(snapshot)
            if changed:
                for key in sorted(changed):
                    entry = snapshot.get(key)
                    logger.info("%s: %s", key, f"version {entry.version}" if entry else "removed")
                if self.notifier is not None and self.ready:
                    self.notifier.changed(changed)
            if not self.ready and self._all_synced():
                self.ready = True
                logger.info("ready: %d prompt file(s) synced", len(snapshot))

    def _publish(self, snapshot: dict[str, Entry]) -> None:
        self.published = snapshot
        self.index_etag = _index_etag(snapshot)
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    async def _wait_changed(self, seconds: float) -> None:
        event = self._changed
        self.waiting += 1
        try:
            await asyncio.wait_for(event.wait(), timeout=seconds)
        except TimeoutError:
            pass
        finally:
            self.waiting -= 1

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
    # HTTP
    def _count(self, endpoint: str, status: int) -> None:
        self.http_requests[(endpoint, status)] = self.http_requests.get((endpoint, status), 0) + 1

    def _lookup(self, name: str, ref: str) -> Entry | None:
        if ref.isascii() and ref.isdigit():
            version = int(ref)
            for key in sorted(self.published):
                entry = self.published[key]
                if entry.name == name and entry.carries_version(version):
                    return entry
            return None
        return self.published.get(f"{name}.{ref}.json")

    @staticmethod
    def _wait_seconds(request: web.Request) -> float:
        try:
            wait = float(request.query.get("wait", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="wait must be a number of seconds") from None
        return max(0.0, min(wait, MAX_WAIT))

    async def handle_prompt(self, request: web.Request) -> web.StreamResponse:
        name, ref = request.match_info["name"], request.match_info["ref"]
        deadline = time.monotonic() + self._wait_seconds(request)
        inm = request.headers.get("If-None-Match")
        while True:
            entry = self._lookup(name, ref)
            remaining = -1.0 if self._stopping else deadline - time.monotonic()
            if entry is not None and (inm is None or not _etag_matches(inm, entry.etag)):
                self._count("prompt", 200)
                return web.Response(
                    body=entry.raw,
                    content_type="application/json",
                    headers={"ETag": entry.etag, "Cache-Control": "no-cache"},
                )
            if remaining <= 0:
                if entry is not None:
                    self._count("prompt", 304)
                    return web.Response(status=304, headers={"ETag": entry.etag})
                self._count("prompt", 404)
                return web.json_response(
                    {"message": f"no projection for prompts:/{name}/{ref} in this sidecar"}, status=404
                )
            if entry is None and inm is not None:
                self._count("prompt", 404)  # it was there (the client has an ETag) and now is gone
                return web.json_response({"message": f"prompts:/{name}/{ref} was removed"}, status=404)
            await self._wait_changed(remaining)

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        deadline = time.monotonic() + self._wait_seconds(request)
        inm = request.headers.get("If-None-Match")
        while inm is not None and _etag_matches(inm, self.index_etag):
            remaining = -1.0 if self._stopping else deadline - time.monotonic()
            if remaining <= 0:
                self._count("index", 304)
                return web.Response(status=304, headers={"ETag": self.index_etag})
            await self._wait_changed(remaining)
        self._count("index", 200)
        prompts = [
            {
                "key": key,
                "name": entry.name,
                "alias": entry.alias,
                "version": entry.version,
                "digest": entry.doc.get("digest"),
                "etag": entry.etag,
            }
            for key, entry in sorted(self.published.items())
        ]
        return web.json_response(
            {"prompts": prompts, "ready": self.ready},
            headers={"ETag": self.index_etag, "Cache-Control": "no-cache"},
        )

    async def handle_healthz(self, request: web.Request) -> web.StreamResponse:
        ok, body = self.health()
        self._count("healthz", 200 if ok else 503)
        return web.json_response(body, status=200 if ok else 503)

    async def handle_readyz(self, request: web.Request) -> web.StreamResponse:
        status = 200 if self.ready else 503
        self._count("readyz", status)
        return web.json_response({"ready": self.ready, "prompts": len(self.published)}, status=status)

    async def handle_metrics(self, request: web.Request) -> web.StreamResponse:
        self._count("metrics", 200)
        return web.Response(text=self.render_metrics(), content_type="text/plain", charset="utf-8")

    def render_metrics(self) -> str:
        now = time.monotonic()
        ok, _ = self.health()
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                out.append(f"{name}{{{rendered}}} {value:g}" if rendered else f"{name} {value:g}")

        statuses = self.statuses
        metric(
            "promptalias_sidecar_watch_events_total",
            "counter",
            "Watch events received from the apiserver (or directory scans in file mode).",
            [({"source": s.name, "type": t}, n) for s in statuses for t, n in sorted(s.events.items())],
        )
        metric(
            "promptalias_sidecar_watch_restarts_total",
            "counter",
            "Watch restarts by reason: closed (server timeout, normal), gone (410, relist), error.",
            [({"source": s.name, "reason": r}, n) for s in statuses for r, n in sorted(s.restarts.items())],
        )
        metric(
            "promptalias_sidecar_relists_total",
            "counter",
            "Full listings (start, 410 Gone).",
            [({"source": s.name}, s.relists) for s in statuses],
        )
        metric(
            "promptalias_sidecar_last_sync_age_seconds",
            "gauge",
            "Seconds since the last contact with the apiserver (or the directory); -1 before the first.",
            [
                ({"source": s.name}, -1 if s.last_contact is None else round(now - s.last_contact, 3))
                for s in statuses
            ],
        )
        metric(
            "promptalias_sidecar_writes_total",
            "counter",
            "Atomic updates of the directory.",
            [({}, self.writes)],
        )
        metric(
            "promptalias_sidecar_write_errors_total",
            "counter",
            "Failed directory updates.",
            [({}, self.write_errors)],
        )
        metric(
            "promptalias_sidecar_invalid_documents_total",
            "counter",
            "Projection documents refused as invalid (the previous good one is kept).",
            [({}, self.state.invalid_total)],
        )
        metric(
            "promptalias_sidecar_untrusted_configmaps",
            "gauge",
            "Labelled ConfigMaps ignored because the operator did not write them (no PromptAlias owner).",
            [({}, len(self.untrusted))],
        )
        metric("promptalias_sidecar_prompts", "gauge", "Prompt files served.", [({}, len(self.published))])
        metric("promptalias_sidecar_ready", "gauge", "1 after the first full sync.", [({}, int(self.ready))])
        metric("promptalias_sidecar_healthy", "gauge", "1 while /healthz passes.", [({}, int(ok))])
        metric(
            "promptalias_sidecar_long_polls", "gauge", "Requests waiting for a change.", [({}, self.waiting)]
        )
        if self.notifier is not None:
            metric(
                "promptalias_sidecar_notifications_total",
                "counter",
                "App notifications by result.",
                [({"result": "sent"}, self.notifier.sent), ({"result": "failed"}, self.notifier.failed)],
            )
        metric(
            "promptalias_sidecar_http_requests_total",
            "counter",
            "HTTP requests by endpoint and status.",
            [({"endpoint": e, "code": str(c)}, n) for (e, c), n in sorted(self.http_requests.items())],
        )
        return "\n".join(out) + "\n"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/prompts", self.handle_index)
        app.router.add_get("/prompts/{name}/{ref}", self.handle_prompt)
        app.router.add_get("/healthz", self.handle_healthz)
        app.router.add_get("/readyz", self.handle_readyz)
        app.router.add_get("/metrics", self.handle_metrics)
        return app

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
            timeout = config.watch_timeout or max(1, min(300, int(config.stale_after / 2)))
            common: dict[str, Any] = {
                "timeout_seconds": timeout,
                "read_grace": min(30.0, config.stale_after / 2),
            }
            if config.names:
                for name in config.names:
                    self.watches.append(
                        ConfigMapWatch(
                            self._session,
                            config.connection,
                            config.namespace,
                            self,
                            field_selector=f"metadata.name={name}",
                            name=f"configmap/{name}",
                            **common,
                        )
                    )
            else:
                self.watches.append(
                    ConfigMapWatch(
                        self._session,
                        config.connection,
                        config.namespace,
                        self,
                        label_selector=config.selector or None,
                        name=f"configmaps[{config.selector}]" if config.selector else "configmaps",
                        **common,
                    )
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
            self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, config.listen_host, config.listen_port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else config.listen_port
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
        self._stopping = True
        old, self._changed = self._changed, asyncio.Event()
        old.set()
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


def _index_etag(entries: dict[str, Entry]) -> str:
    # Content-based, so it survives a sidecar restart: a client never mistakes new content for old.
    listing = json.dumps(sorted((key, entry.etag) for key, entry in entries.items()))
    return '"i-' + hashlib.sha256(listing.encode()).hexdigest()[:32] + '"'


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    candidates = [part.strip().removeprefix("W/") for part in header.split(",")]
    return etag in candidates


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
