"""The webhook receiver's HTTP answers and its refresh, over loopback, with a stand-in World.

The stand-in holds only what the receiver reads (registries, a Secret, the PromptAliases of a
prompt, an MLflow client answering get_prompt); the real thing is exercised end to end in
tests/integration/test_webhook_operator.py.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest

from promptalias.api.promptalias import RegistryKind
from promptalias.api.registry import PromptRegistrySpec
from promptalias.handlers.state import Snapshot
from promptalias.handlers.webhooks import CLUSTER_SCOPE, PATH_PREFIX, Receiver
from promptalias.reconcile.registry import KnownRegistry, RegistryKey
from promptalias.registry import PromptState
from promptalias.registry.webhooks import DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from promptalias.testbed.ports import free_port

SECRET = "hook-secret"
KEY = RegistryKey(RegistryKind.PROMPT_REGISTRY, "billing", "mlflow")
ENDPOINT = "http://mlflow.example:5000"


class StubKube:
    def __init__(self) -> None:
        self.secret = SECRET
        self.reads = 0

    async def read_secret(self, namespace: str, name: str) -> tuple[str, dict[str, bytes]]:
        assert (namespace, name) == ("billing", "hook")
        self.reads += 1
        return "1", {"secret": (self.secret + "\n").encode()}


class StubClient:
    identity = "cred:stub"  # snapshots are keyed by credential identity, not endpoint

    def __init__(self) -> None:
        self.aliases = {"production": 3}
        self.reads = 0

    async def get_prompt(self, name: str) -> PromptState:
        self.reads += 1
        return PromptState(name, dict(self.aliases), {}, True)


class StubTable:
    def uids_where(self, *, endpoint: str, prompt: str) -> list[str]:
        return ["uid-1"] if (endpoint, prompt) == (ENDPOINT, "invoice-parser") else []


@dataclass
class StubWorld:
    kube: StubKube = field(default_factory=StubKube)
    mlflow: StubClient = field(default_factory=StubClient)
    registries: dict[RegistryKey, KnownRegistry] = field(default_factory=dict)
    snapshots: dict[tuple[str, str], Snapshot] = field(default_factory=dict)
    poked: list[str] = field(default_factory=list)
    table: StubTable = field(default_factory=StubTable)

    async def client(self, known: KnownRegistry) -> StubClient:
        return self.mlflow

    def poke(self, uids: list[str], *, fresh: bool) -> None:
        self.poked.extend(uids)

    def poll_trigger(self, endpoint: str) -> asyncio.Event:
        raise AssertionError("the direct refresh worked; no poll needed")


def world_with(webhook: dict[str, Any] | None) -> StubWorld:
    spec: dict[str, Any] = {"trackingUri": ENDPOINT}
    if webhook is not None:
        spec["webhook"] = webhook
    world = StubWorld()
    world.registries[KEY] = KnownRegistry(KEY, PromptRegistrySpec.model_validate(spec), "uid", 1)
    return world


ENABLED = {"enabled": True, "secretRef": {"name": "hook"}}


def delivery(
    prompt: str = "invoice-parser", *, secret: str = SECRET, age_s: float = 0, version: str = "4"
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "entity": "prompt_alias",
            "action": "created",
            "data": {"name": prompt, "alias": "production", "version": version},
        }
    ).encode()
    delivery_id, stamp = str(uuid.uuid4()), str(int(time.time() - age_s))
    headers = {
        "Content-Type": "application/json",
        DELIVERY_ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(secret, delivery_id, stamp, body),
    }
    return headers, body


Post = Callable[[str, dict[str, str], bytes], Awaitable[tuple[int, dict[str, Any]]]]


def serve(world: StubWorld, check: Callable[[Receiver, Post], Awaitable[None]]) -> None:
    async def main() -> None:
        receiver = Receiver(world, object())  # type: ignore[arg-type]
        runner = aiohttp.web.AppRunner(receiver.app())
        await runner.setup()
        port = free_port()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with aiohttp.ClientSession() as session:

                async def post(path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
                    url = f"http://127.0.0.1:{port}{PATH_PREFIX}/{path}"
                    async with session.post(url, data=body, headers=headers) as response:
                        return response.status, await response.json()

                await check(receiver, post)
        finally:
            await receiver.close()
            await runner.cleanup()

    asyncio.run(main())


def test_genuine_delivery_refreshes_the_prompt_and_wakes_its_workers() -> None:
    world = world_with(ENABLED)
    world.snapshots[(StubClient.identity, "invoice-parser")] = Snapshot(
        PromptState("invoice-parser", {"production": 2}, {}, True), 0
    )

    async def check(receiver: Receiver, post: Post) -> None:
        status, answer = await post("billing/mlflow", *delivery())
        assert (status, answer) == (200, {"status": "accepted"})
        for _ in range(100):
            if world.poked:
                break
            await asyncio.sleep(0.01)
        assert world.poked == ["uid-1"]
        assert world.snapshots[(StubClient.identity, "invoice-parser")].state == PromptState(
            "invoice-parser", {"production": 3}, {}, True
        )
        # Same aliases again: a read, but nobody is woken.
        status, _ = await post("billing/mlflow", *delivery())
        assert status == 200
        await asyncio.sleep(0.05)
        assert world.poked == ["uid-1"]
        assert world.mlflow.reads == 2
        # A prompt no PromptAlias uses is not even read.
        status, _ = await post("billing/mlflow", *delivery("someone-elses"))
        assert status == 200
        await asyncio.sleep(0.05)
        assert world.mlflow.reads == 2
        assert receiver.accepted == 3

    serve(world, check)


def test_forged_unsigned_and_replayed_deliveries_are_refused() -> None:
    world = world_with(ENABLED)

    async def check(receiver: Receiver, post: Post) -> None:
        headers, body = delivery()
        unsigned = {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}
        assert (await post("billing/mlflow", unsigned, body))[0] == 401
        assert (await post("billing/mlflow", *delivery(secret="guessed")))[0] == 401
        tampered = body.replace(b'"4"', b'"9"')
        assert (await post("billing/mlflow", headers, tampered))[0] == 401
        status, answer = await post("billing/mlflow", *delivery(age_s=3600))
        assert (status, answer["error"]) == (400, "StaleTimestamp")
        assert (await post("billing/mlflow", headers, body))[0] == 200
        status, answer = await post("billing/mlflow", headers, body)
        assert (status, answer["error"]) == (400, "Replayed")
        assert (await post(f"{CLUSTER_SCOPE}/mlflow", *delivery()))[0] == 404
        assert (await post("other/mlflow", *delivery()))[0] == 404
        assert (await post("billing/mlflow", headers, b"x" * 70_000))[0] == 413
        assert receiver.accepted == 1
        assert dict(receiver.rejected) == {
            "Unsigned": 1,
            "BadSignature": 2,
            "StaleTimestamp": 1,
            "Replayed": 1,
            "UnknownRegistry": 2,
            "TooLarge": 1,
        }
        assert world.mlflow.reads == 1  # only the genuine delivery led to a read

    serve(world, check)


def test_disabled_webhook_is_not_an_endpoint() -> None:
    world = world_with({"enabled": False})

    async def check(receiver: Receiver, post: Post) -> None:
        assert (await post("billing/mlflow", *delivery()))[0] == 404

    serve(world, check)


def test_a_rotated_secret_is_read_again_before_refusing() -> None:
    world = world_with(ENABLED)

    async def check(receiver: Receiver, post: Post) -> None:
        assert (await post("billing/mlflow", *delivery()))[0] == 200
        world.kube.secret = "rotated"
        cached = receiver.secrets[KEY]  # the cached copy is a few seconds old
        receiver.secrets[KEY] = replace(cached, fetched=cached.fetched - 10)
        assert (await post("billing/mlflow", *delivery(secret="rotated")))[0] == 200
        assert world.kube.reads == 2
        # A wrong signature right after a re-read is refused without reading again.
        assert (await post("billing/mlflow", *delivery(secret="guessed")))[0] == 401
        assert world.kube.reads == 2
        # MLflow may still sign with the old secret until its webhook is updated: accepted for a while.
        assert (await post("billing/mlflow", *delivery()))[0] == 200
        receiver.secrets[KEY] = replace(receiver.secrets[KEY], previous_until=0)
        assert (await post("billing/mlflow", *delivery()))[0] == 401

    serve(world, check)


# ---- hardening: the port faces the network ---------------------------------------------------------


def guarded(world: StubWorld, check: Callable[[Receiver, int], Awaitable[None]]) -> None:
    """The receiver as the operator serves it (connection guard included), on a free port."""

    async def main() -> None:
        receiver = Receiver(world, object())  # type: ignore[arg-type]
        port = await receiver.serve("127.0.0.1", 0)
        try:
            await check(receiver, port)
        finally:
            await receiver.close()

    asyncio.run(main())


def raw_request(path: str, headers: dict[str, bytes], body: bytes) -> bytes:
    lines = [f"POST {PATH_PREFIX}/{path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def status_of(reader: asyncio.StreamReader) -> int:
    line = await reader.readline()
    return int(line.split()[1])


def test_the_whole_body_is_read_even_when_it_arrives_in_pieces() -> None:
    world = world_with(ENABLED)

    async def check(receiver: Receiver, port: int) -> None:
        headers, body = delivery()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw_request("billing/mlflow", {k: v.encode() for k, v in headers.items()}, body))
        writer.write(body[:10])
        await writer.drain()
        await asyncio.sleep(0.2)  # the rest arrives later, as over a slow network
        writer.write(body[10:])
        await writer.drain()
        assert await status_of(reader) == 200
        writer.close()
        assert receiver.accepted == 1

    guarded(world, check)


def test_a_header_that_is_not_utf8_is_a_400_not_a_500() -> None:
    world = world_with(ENABLED)

    async def check(receiver: Receiver, port: int) -> None:
        headers, body = delivery()
        raw = {k: v.encode() for k, v in headers.items()}
        raw[SIGNATURE_HEADER] = b"v1,\xff\xfe\xfa"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw_request("billing/mlflow", raw, body) + body)
        await writer.drain()
        assert await status_of(reader) == 400
        writer.close()

    guarded(world, check)


def test_slow_headers_and_slow_bodies_are_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptalias.handlers import webhook_receiver

    monkeypatch.setattr(webhook_receiver, "HEADER_TIMEOUT_S", 0.3)
    monkeypatch.setattr(webhook_receiver, "BODY_TIMEOUT_S", 0.3)
    world = world_with(ENABLED)

    async def check(receiver: Receiver, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /mlflow/webhook/billing/mlflow HTTP/1.1\r\nHost: x\r\n")  # never finished
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the receiver
        writer.close()
        assert receiver.rejected["SlowHeaders"] == 1

        headers, body = delivery()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            raw_request("billing/mlflow", {k: v.encode() for k, v in headers.items()}, body) + body[:5]
        )
        await writer.drain()
        assert await asyncio.wait_for(status_of(reader), 10) == 408
        writer.close()

    guarded(world, check)


def test_open_connections_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptalias.handlers import webhook_receiver

    monkeypatch.setattr(webhook_receiver, "MAX_CONNECTIONS", 2)
    world = world_with(ENABLED)

    async def check(receiver: Receiver, port: int) -> None:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the third is closed at once
        assert receiver.refused_connections == 1
        for _, w in held:
            w.close()
            await w.wait_closed()
        writer.close()

        async def counted() -> None:
            while receiver.connections:  # noqa: ASYNC110 -- a counter, no event to wait on
                await asyncio.sleep(0.01)

        await asyncio.wait_for(counted(), 10)
        headers, body = delivery()  # room again
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw_request("billing/mlflow", {k: v.encode() for k, v in headers.items()}, body) + body)
        await writer.drain()
        assert await status_of(reader) == 200
        writer.close()

    guarded(world, check)


def test_a_burst_of_bad_signatures_reads_the_secret_once() -> None:
    world = world_with(ENABLED)

    async def check(receiver: Receiver, post: Post) -> None:
        assert (await post("billing/mlflow", *delivery()))[0] == 200
        assert world.kube.reads == 1
        cached = receiver.secrets[KEY]
        receiver.secrets[KEY] = replace(cached, fetched=cached.fetched - 10)  # old enough to re-read
        results = await asyncio.gather(
            *(post("billing/mlflow", *delivery(secret="forged")) for _ in range(20))
        )
        assert {status for status, _ in results} == {401}
        assert world.kube.reads == 2

    serve(world, check)
