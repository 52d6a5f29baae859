"""The sidecar's HTTP surface in-process (file mode: no apiserver needed): ETag, long-poll, health."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from promptalias.projection.render import render_projection, serialize_document
from promptalias.sidecar.app import Sidecar, SidecarConfig
from promptalias.sidecar.atomic import AtomicDirWriter

METRIC_LINE = re.compile(r'^[a-z_]+(\{([a-z]+="[^"]*",?)*\})? -?[0-9.e+-]+$')


def doc(name: str, alias: str, version: int) -> bytes:
    return serialize_document(
        render_projection(
            name=name,
            alias=alias,
            version=version,
            template=f"v{version} {{{{x}}}}",
            response_format=None,
            model_config=None,
            tags={},
            updated="2025-01-01T00:00:00Z",
        )
    ).encode()


def version_on_disk(directory: str, key: str) -> int:
    return int(json.loads(Path(directory, key).read_bytes())["version"])


def run(
    tmp_path: Path,
    scenario: Callable[[Sidecar, aiohttp.ClientSession, str, AtomicDirWriter], Awaitable[None]],
    **config: Any,
) -> None:
    mounted = AtomicDirWriter(str(tmp_path / "mounted"))
    mounted.write({"p.prod.json": doc("p", "prod", 1)})

    async def main() -> None:
        sidecar = Sidecar(
            SidecarConfig(
                from_dir=str(tmp_path / "mounted"),
                directory=str(tmp_path / "out"),
                listen_port=0,
                poll_interval=0.02,
                **config,
            )
        )
        await sidecar.start()
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{sidecar.bound_port}") as http:
                deadline = time.monotonic() + 5
                while not sidecar.ready:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.01)
                await scenario(sidecar, http, str(tmp_path / "out"), mounted)
        finally:
            await sidecar.stop()

    asyncio.run(main())


def test_etag_long_poll_and_lookup(tmp_path: Path) -> None:
    async def scenario(
        sidecar: Sidecar, http: aiohttp.ClientSession, out: str, mounted: AtomicDirWriter
    ) -> None:
        async with http.get("/prompts/p/prod") as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-cache"
            etag = resp.headers["ETag"]
            assert json.loads(await resp.read())["version"] == 1
        async with http.get("/prompts/p/prod", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
        async with http.get("/prompts/p/prod", headers={"If-None-Match": f'W/{etag}, "other"'}) as resp:
            assert resp.status == 304

        async def long_poll() -> tuple[int, float, bytes]:
            async with http.get("/prompts/p/prod?wait=5", headers={"If-None-Match": etag}) as resp:
                return resp.status, time.monotonic(), await resp.read()

        poll = asyncio.create_task(long_poll())
        await asyncio.sleep(0.2)
        assert not poll.done()
        assert sidecar.waiting == 1
        mounted.write({"p.prod.json": doc("p", "prod", 2)})
        written = time.monotonic()
        status, woke, body = await poll
        assert status == 200
        assert json.loads(body)["version"] == 2
        assert woke >= written  # woken by the change (a timeout would answer 304, not 200)
        assert version_on_disk(out, "p.prod.json") == 2  # on disk before the answer

        started = time.monotonic()
        async with http.get(
            "/prompts/p/prod?wait=0.3", headers={"If-None-Match": etag.replace("a", "b")}
        ) as resp:
            assert resp.status == 200  # a stale ETag gets the current document at once
        async with http.get("/prompts/p/2") as resp:
            assert resp.status == 200
        async with http.get("/prompts/p/staging") as resp:
            assert resp.status == 404
            assert "prompts:/p/staging" in (await resp.json())["message"]
        started = time.monotonic()
        async with http.get("/prompts/q/prod?wait=0.3") as resp:
            assert resp.status == 404
            assert time.monotonic() - started >= 0.3
        async with http.get("/prompts/p/prod?wait=abc") as resp:
            assert resp.status == 400

        # Removal wakes a long-poll with 404.
        async with http.get("/prompts/p/prod") as resp:
            etag = resp.headers["ETag"]
        poll2 = asyncio.create_task(long_poll_etag(http, "/prompts/p/prod?wait=5", etag))
        await asyncio.sleep(0.1)
        mounted.write({"q.prod.json": doc("q", "prod", 1)})
        assert (await poll2) == 404

    run(tmp_path, scenario)


async def long_poll_etag(http: aiohttp.ClientSession, path: str, etag: str) -> int:
    async with http.get(path, headers={"If-None-Match": etag}) as resp:
        return resp.status


def test_index_long_poll_and_metrics(tmp_path: Path) -> None:
    async def scenario(
        sidecar: Sidecar, http: aiohttp.ClientSession, out: str, mounted: AtomicDirWriter
    ) -> None:
        async with http.get("/prompts") as resp:
            index_etag = resp.headers["ETag"]
            body = await resp.json()
        assert body["ready"] is True
        assert [(p["key"], p["version"]) for p in body["prompts"]] == [("p.prod.json", 1)]
        waiter = asyncio.create_task(long_poll_etag(http, "/prompts?wait=5", index_etag))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        mounted.write({"p.prod.json": doc("p", "prod", 1), "q.prod.json": doc("q", "prod", 1)})
        assert await waiter == 200
        async with http.get("/prompts?wait=0.1", headers={"If-None-Match": index_etag}) as resp:
            assert resp.status == 200  # changed since that ETag
            new_etag = resp.headers["ETag"]
        async with http.get("/prompts?wait=0.1", headers={"If-None-Match": new_etag}) as resp:
            assert resp.status == 304
        async with http.get("/readyz") as resp:
            assert resp.status == 200
        async with http.get("/metrics") as resp:
            text = await resp.text()
            assert resp.headers["Content-Type"].startswith("text/plain")
        samples = [line for line in text.splitlines() if not line.startswith("#")]
        assert samples
        assert all(METRIC_LINE.match(line) for line in samples), [
            s for s in samples if not METRIC_LINE.match(s)
        ]
        assert "promptalias_sidecar_prompts 2" in samples
        assert "promptalias_sidecar_ready 1" in samples
        assert any(line.startswith("promptalias_sidecar_writes_total ") for line in samples)
        assert any(
            line.startswith('promptalias_sidecar_last_sync_age_seconds{source="dir ') for line in samples
        )
        assert any(
            line.startswith('promptalias_sidecar_http_requests_total{code="304",endpoint="index"}')
            for line in samples
        )

    run(tmp_path, scenario)


def test_healthz_follows_the_source(tmp_path: Path) -> None:
    async def scenario(
        sidecar: Sidecar, http: aiohttp.ClientSession, out: str, mounted: AtomicDirWriter
    ) -> None:
        async with http.get("/healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
            assert body["status"] == "ok"
        shutil.rmtree(mounted.directory)  # the mount is gone: no more contact with the source
        await asyncio.sleep(0.6)
        async with http.get("/healthz") as resp:
            assert resp.status == 503
            body = await resp.json()
            assert "no contact for" in body["problems"][0]
            assert "FileNotFoundError" in body["problems"][0]
        async with http.get("/prompts/p/prod") as resp:
            assert resp.status == 200  # still serving what it has
        mounted.write({"p.prod.json": doc("p", "prod", 3)})
        await asyncio.sleep(0.2)
        async with http.get("/healthz") as resp:
            assert resp.status == 200
        sidecar.statuses[0].dead = True
        async with http.get("/healthz") as resp:
            assert resp.status == 503
            assert "stopped" in (await resp.json())["problems"][0]

    run(tmp_path, scenario, stale_after=0.4)


def test_stop_answers_waiting_long_polls(tmp_path: Path) -> None:
    async def scenario(
        sidecar: Sidecar, http: aiohttp.ClientSession, out: str, mounted: AtomicDirWriter
    ) -> None:
        async with http.get("/prompts/p/prod") as resp:
            etag = resp.headers["ETag"]
        waiter = asyncio.create_task(long_poll_etag(http, "/prompts/p/prod?wait=60", etag))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await sidecar.stop()
        assert await waiter == 304
        assert time.monotonic() - started < 30  # released by the stop, not by its 60 s wait

    run(tmp_path, scenario)
