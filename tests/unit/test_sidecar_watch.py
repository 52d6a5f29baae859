"""The list+watch protocol against a scripted stand-in apiserver (the real one is in the integration
tests; this one can send what a real server rarely does on demand: 410 Gone, bookmarks, 403)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web

from promptalias.sidecar.kubeconfig import KubeConnection
from promptalias.sidecar.watch import ConfigMap, ConfigMapWatch, Handler


def cm(name: str, rv: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv}, "data": data or {}}


class Recorder(Handler):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def listed(self, watch: ConfigMapWatch, items: list[ConfigMap]) -> None:
        self.calls.append(("listed", sorted(i["metadata"]["name"] for i in items)))

    async def event(self, watch: ConfigMapWatch, kind: str, obj: ConfigMap) -> None:
        self.calls.append((kind, obj["metadata"]["name"]))


class FakeApiserver:
    """Lists and watches follow a script; every request is recorded with its query."""

    def __init__(self, lists: list[Any], watches: list[Any]) -> None:
        self.lists = lists
        self.watches = watches
        self.requests: list[dict[str, str]] = []
        self.done = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append(query)
        script = self.watches if query.get("watch") else self.lists
        if not script:
            self.done.set()
            await asyncio.sleep(3600)
        step = script.pop(0)
        if isinstance(step, int):
            return web.json_response(
                {"kind": "Status", "code": step, "message": f"status {step}"}, status=step
            )
        if not query.get("watch"):
            return web.json_response(step)
        response = web.StreamResponse()
        await response.prepare(request)
        for event in step:
            await response.write(json.dumps(event).encode() + b"\n")
        return response


async def run_watch(server: FakeApiserver, **kwargs: Any) -> tuple[ConfigMapWatch, Recorder]:
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/configmaps", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recorder = Recorder()

    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    async with aiohttp.ClientSession() as session:
        watch = ConfigMapWatch(
            session,
            KubeConnection(server=f"http://127.0.0.1:{port}", ssl_context=False),
            "ns",
            recorder,
            label_selector="app.kubernetes.io/managed-by=promptalias",
            timeout_seconds=5,
            sleep=no_sleep,
            **kwargs,
        )
        task = asyncio.create_task(watch.run())
        try:
            await asyncio.wait_for(server.done.wait(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    await runner.cleanup()
    return watch, recorder


def test_resume_bookmarks_and_410_relist() -> None:
    big = "x" * 200_000  # one event line far beyond aiohttp's 64 KiB line limit
    server = FakeApiserver(
        lists=[
            {"metadata": {"resourceVersion": "10"}, "items": [cm("a", "5")]},
            {"metadata": {"resourceVersion": "20"}, "items": [cm("a", "5"), cm("b", "19")]},
            {"metadata": {"resourceVersion": "30"}, "items": [cm("b", "19")]},
        ],
        watches=[
            [
                {"type": "ADDED", "object": cm("b", "11", {"k": big})},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
            ],  # then a clean end: resume from 12
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}],
            410,  # the HTTP form of Gone
            [{"type": "DELETED", "object": cm("b", "31")}],
        ],
    )
    watch, recorder = asyncio.run(run_watch(server))
    assert recorder.calls == [
        ("listed", ["a"]),
        ("ADDED", "b"),
        ("listed", ["a", "b"]),
        ("listed", ["b"]),
        ("DELETED", "b"),
    ]
    watch_requests = [r for r in server.requests if r.get("watch")]
    assert [r["resourceVersion"] for r in watch_requests] == ["10", "12", "20", "30", "31"]
    assert all(r["allowWatchBookmarks"] == "true" and r["timeoutSeconds"] == "5" for r in watch_requests)
    assert all(r["labelSelector"] == "app.kubernetes.io/managed-by=promptalias" for r in server.requests)
    assert all(r["limit"] == "500" for r in server.requests if not r.get("watch"))
    status = watch.status
    assert status.relists == 3
    assert status.restarts == {"closed": 2, "gone": 2}
    assert status.events == {"ADDED": 1, "BOOKMARK": 1, "DELETED": 1}
    assert status.synced
    assert status.last_contact is not None


def test_paged_list_and_field_selector() -> None:
    server = FakeApiserver(
        lists=[
            {"metadata": {"resourceVersion": "7", "continue": "next"}, "items": [cm("a", "1")]},
            {"metadata": {"resourceVersion": "7"}, "items": [cm("b", "2")]},
        ],
        watches=[],
    )
    watch, recorder = asyncio.run(run_watch(server, field_selector="metadata.name=a"))
    assert recorder.calls == [("listed", ["a", "b"])]
    assert server.requests[1]["continue"] == "next"
    assert server.requests[0]["fieldSelector"] == "metadata.name=a"
    assert watch.status.resource_version == "7"


def test_forbidden_is_an_error_not_contact() -> None:
    server = FakeApiserver(lists=[403, 403], watches=[])
    watch, recorder = asyncio.run(run_watch(server))
    assert recorder.calls == []
    assert watch.status.last_contact is None
    assert not watch.status.synced
    assert watch.status.restarts == {"error": 2}
    assert watch.status.last_error is not None
    assert "HTTP 403" in watch.status.last_error


def test_errors_mid_watch_resume_without_relisting() -> None:
    server = FakeApiserver(
        lists=[{"metadata": {"resourceVersion": "10"}, "items": []}],
        watches=[500, [{"type": "ADDED", "object": cm("a", "11")}], 503],
    )
    watch, recorder = asyncio.run(run_watch(server))
    assert recorder.calls == [("listed", []), ("ADDED", "a")]
    assert [r["resourceVersion"] for r in server.requests if r.get("watch")] == ["10", "10", "11", "11"]
    assert watch.status.relists == 1
    assert watch.status.restarts == {"error": 2, "closed": 1}
