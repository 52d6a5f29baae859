"""Bounded reads from MLflow and no echo of server bodies (SSRF): a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from promptalias.registry import MlflowRegistry, RegistryConfig
from promptalias.registry.cache import VersionCache
from promptalias.registry.client import MAX_PAGES, MAX_RESPONSE_BYTES
from promptalias.registry.errors import RegistryError, RegistryProtocolError

SECRET = "internal-admin-token-Zx81"


async def _with_server(
    routes: Callable[[web.Request], Awaitable[web.StreamResponse]],
    body: Callable[[MlflowRegistry], Awaitable[Any]],
) -> Any:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with MlflowRegistry(RegistryConfig(f"http://127.0.0.1:{port}"), cache=VersionCache()) as reg:
            return await body(reg)
    finally:
        await runner.cleanup()


def run(
    routes: Callable[[web.Request], Awaitable[web.StreamResponse]],
    body: Callable[[MlflowRegistry], Awaitable[Any]],
) -> Any:
    return asyncio.run(_with_server(routes, body))


def failure(
    routes: Callable[[web.Request], Awaitable[web.StreamResponse]], op: str = "get_prompt"
) -> RegistryError:
    async def call(reg: MlflowRegistry) -> RegistryError:
        request = reg.check() if op == "check" else reg.get_prompt("p")
        with pytest.raises(RegistryError) as caught:
            await request
        return caught.value

    result: RegistryError = run(routes, call)
    return result


@pytest.mark.parametrize("status", [200, 400, 403, 404, 500, 502])
@pytest.mark.parametrize("content_type", ["text/html", "text/plain", "application/json"])
def test_an_internal_services_answer_is_never_echoed(status: int, content_type: str) -> None:
    """trackingUri pointing at an internal URL: its body must not come back through status."""

    async def internal(request: web.Request) -> web.StreamResponse:
        text = json.dumps({"token": SECRET}) if content_type == "application/json" else f"<p>{SECRET}</p>"
        if status == 200 and content_type == "application/json":
            text = "{not json " + SECRET
        return web.Response(status=status, text=text, content_type=content_type)

    err = failure(internal)
    assert SECRET not in str(err)
    version_err = failure(internal, op="check")
    assert SECRET not in str(version_err)


def test_mlflow_error_messages_are_quoted_scrubbed_and_cut() -> None:
    async def mlflow(request: web.Request) -> web.StreamResponse:
        message = "Registered Model with name=p not found\x1b[31m\r\nInjected: " + "x" * 2000
        return web.json_response({"error_code": "INVALID_PARAMETER_VALUE", "message": message}, status=400)

    err = failure(mlflow)
    assert "Registered Model with name=p not found" in str(err)
    assert "\x1b" not in str(err)
    assert "\r" not in str(err)
    assert "\n" not in str(err)
    assert len(str(err)) < 700


def test_an_answer_larger_than_the_bound_is_refused() -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()  # no Content-Length: the bound applies while reading
        await response.prepare(request)
        chunk = b" " * (1024 * 1024)
        for _ in range(MAX_RESPONSE_BYTES // len(chunk) + 2):
            try:
                await response.write(chunk)
            except ConnectionError:
                break
        return response

    err = failure(huge)
    assert isinstance(err, RegistryProtocolError)
    assert "refusing to read it" in str(err)


def test_a_declared_length_over_the_bound_is_refused_before_reading() -> None:
    async def declared(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "application/json", "Content-Length": str(MAX_RESPONSE_BYTES + 1)},
        )
        await response.prepare(request)
        await response.write(b"{}")
        return response

    err = failure(declared)
    assert isinstance(err, RegistryProtocolError)
    assert str(MAX_RESPONSE_BYTES + 1) in str(err)


def test_pagination_is_bounded_and_a_repeated_token_stops_it() -> None:
    pages: list[str | None] = []

    async def repeating(request: web.Request) -> web.StreamResponse:
        pages.append(request.query.get("page_token"))
        return web.json_response({"model_versions": [], "next_page_token": "same"})

    async def listing(reg: MlflowRegistry) -> RegistryError:
        with pytest.raises(RegistryProtocolError) as caught:
            await reg.list_versions("p")
        return caught.value

    err = run(repeating, listing)
    assert "repeated a page token" in str(err)
    assert pages == [None, "same"]

    count = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal count
        count += 1
        return web.json_response({"model_versions": [], "next_page_token": f"t{count}"})

    err = run(endless, listing)
    assert "refusing to read more" in str(err)
    assert count == MAX_PAGES
