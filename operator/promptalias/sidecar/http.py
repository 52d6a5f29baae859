"""The sidecar's HTTP API over a published snapshot: prompts (ETag, long-poll), index, health, metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from promptalias.sidecar.snapshot import Published, etag_matches

MAX_WAIT = 300.0


class HttpApi:
    """Request handlers; `health()` and `metrics()` are supplied by the sidecar."""

    def __init__(
        self,
        published: Published,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        metrics: Callable[[], str],
    ) -> None:
        self.published = published
        self.health = health
        self.metrics = metrics
        self.requests: dict[tuple[str, int], int] = {}  # (endpoint, status) -> count

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/prompts", self.handle_index)
        app.router.add_get("/prompts/{name}/{ref}", self.handle_prompt)
        app.router.add_get("/healthz", self.handle_healthz)
        app.router.add_get("/readyz", self.handle_readyz)
        app.router.add_get("/metrics", self.handle_metrics)
        return app

    def _count(self, endpoint: str, status: int) -> None:
        self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1

    @staticmethod
    def _wait_seconds(request: web.Request) -> float:
        try:
            wait = float(request.query.get("wait", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="wait must be a number of seconds") from None
        return max(0.0, min(wait, MAX_WAIT))

    def _remaining(self, deadline: float) -> float:
        return -1.0 if self.published.stopping else deadline - time.monotonic()

    async def handle_prompt(self, request: web.Request) -> web.StreamResponse:
        name, ref = request.match_info["name"], request.match_info["ref"]
        deadline = time.monotonic() + self._wait_seconds(request)
        inm = request.headers.get("If-None-Match")
        while True:
            entry = self.published.lookup(name, ref)
            remaining = self._remaining(deadline)
            if entry is not None and (inm is None or not etag_matches(inm, entry.etag)):
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
            await self.published.wait_changed(remaining)

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        deadline = time.monotonic() + self._wait_seconds(request)
        inm = request.headers.get("If-None-Match")
        while inm is not None and etag_matches(inm, self.published.index_etag):
            remaining = self._remaining(deadline)
            if remaining <= 0:
                self._count("index", 304)
                return web.Response(status=304, headers={"ETag": self.published.index_etag})
            await self.published.wait_changed(remaining)
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
            for key, entry in sorted(self.published.entries.items())
        ]
        return web.json_response(
            {"prompts": prompts, "ready": self.published.ready},
            headers={"ETag": self.published.index_etag, "Cache-Control": "no-cache"},
        )

    async def handle_healthz(self, request: web.Request) -> web.StreamResponse:
        ok, body = self.health()
        self._count("healthz", 200 if ok else 503)
        return web.json_response(body, status=200 if ok else 503)

    async def handle_readyz(self, request: web.Request) -> web.StreamResponse:
        ready = self.published.ready
        status = 200 if ready else 503
        self._count("readyz", status)
        return web.json_response({"ready": ready, "prompts": len(self.published.entries)}, status=status)

    async def handle_metrics(self, request: web.Request) -> web.StreamResponse:
        self._count("metrics", 200)
        return web.Response(text=self.metrics(), content_type="text/plain", charset="utf-8")
