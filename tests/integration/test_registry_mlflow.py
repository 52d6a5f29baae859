"""The async registry against a real `mlflow server` (sqlite): reads, writes, errors, request counts.

Prompts are registered with the `mlflow` package, the way users do, so these tests prove that the
REST payloads MLflow really writes parse as the registry expects.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from promptalias.registry import (
    AliasNotFound,
    MlflowRegistry,
    NotAPrompt,
    PromptNotFound,
    PromptVersion,
    RegistryConfig,
    RegistryRejected,
    RegistryUnavailable,
    VersionCache,
    VersionNotFound,
)
from promptalias.registry.testing import register_model, register_prompt_versions, set_alias_with_mlflow
from promptalias.testbed import Testbed

pytestmark = pytest.mark.integration

T = TypeVar("T")

CHAT = [
    {"role": "system", "content": "You extract invoices. Currency: {{currency}}."},
    {"role": "user", "content": "{{invoice}}"},
]
SCHEMA = {
    "type": "object",
    "properties": {"total": {"type": "number"}, "vendor": {"type": "string"}},
    "required": ["total"],
}


def run(scenario: Callable[[MlflowRegistry], Awaitable[T]], config: RegistryConfig) -> T:
    """Run one async scenario with a fresh registry (own cache) on a fresh event loop."""

    async def main() -> T:
        async with MlflowRegistry(config, cache=VersionCache()) as registry:
            return await scenario(registry)

    return asyncio.run(main())


@pytest.fixture
def config(testbed: Testbed) -> RegistryConfig:
    return RegistryConfig(testbed.mlflow_uri, timeout_s=5)


async def one_request(registry: MlflowRegistry, awaitable: Awaitable[T]) -> T:
    """Await `awaitable` and assert that it cost exactly one HTTP request."""
    before = registry.requests_sent
    result = await awaitable
    assert registry.requests_sent - before == 1
    return result


async def no_request(registry: MlflowRegistry, call: Awaitable[T]) -> T:
    """Await `call` and prove that it was answered without asking the server."""
    before = registry.requests_sent
    result = await call
    assert registry.requests_sent == before
    return result


def test_check_reports_the_server_version(config: RegistryConfig) -> None:
    import mlflow

    async def scenario(registry: MlflowRegistry) -> None:
        info = await registry.check()
        assert info.version == mlflow.__version__
        assert info.uri == config.tracking_uri
        assert info.authenticated is False

    run(scenario, config)


def test_get_prompt_reads_every_alias_in_one_request(
    config: RegistryConfig, prompt_name: str, mlflow_client: Any
) -> None:
    register_prompt_versions(
        config.tracking_uri, prompt_name, ["a {{x}}", "b {{x}}", "c {{x}}"], tags={"team": "t"}
    )
    mlflow_client.set_prompt_alias(prompt_name, "production", 1)
    mlflow_client.set_prompt_alias(prompt_name, "staging", 3)

    async def scenario(registry: MlflowRegistry) -> None:
        state = await one_request(registry, registry.get_prompt(prompt_name))
        assert state.name == prompt_name
        assert state.aliases == {"production": 1, "staging": 3}
        assert state.is_prompt
        assert state.tags == {"team": "t"}
        assert state.latest_version == 3

    run(scenario, config)


def test_set_move_and_delete_an_alias(config: RegistryConfig, prompt_name: str, mlflow_client: Any) -> None:
    register_prompt_versions(config.tracking_uri, prompt_name, ["one", "two"])

    async def scenario(registry: MlflowRegistry) -> None:
        await one_request(registry, registry.set_alias(prompt_name, "production", 1))
        assert mlflow_client.get_prompt_version_by_alias(prompt_name, "production").version == 1

        await one_request(registry, registry.set_alias(prompt_name, "production", 2))
        assert (await registry.get_prompt(prompt_name)).aliases == {"production": 2}
        by_alias = await one_request(registry, registry.get_version_by_alias(prompt_name, "production"))
        assert (by_alias.version, by_alias.template) == (2, "two")

        await one_request(registry, registry.delete_alias(prompt_name, "production"))
        assert (await registry.get_prompt(prompt_name)).aliases == {}
        # Deleting a missing alias succeeds: MLflow answers 200, and deletion is idempotent anyway.
        await one_request(registry, registry.delete_alias(prompt_name, "production"))

    run(scenario, config)


def test_alias_moved_by_mlflow_itself_is_seen(config: RegistryConfig, prompt_name: str) -> None:
    register_prompt_versions(config.tracking_uri, prompt_name, ["one", "two"])

    async def scenario(registry: MlflowRegistry) -> None:
        await registry.set_alias(prompt_name, "production", 1)
        await asyncio.to_thread(set_alias_with_mlflow, config.tracking_uri, prompt_name, "production", 2)
        assert (await registry.get_prompt(prompt_name)).aliases["production"] == 2
        assert (await registry.get_version_by_alias(prompt_name, "production")).version == 2

    run(scenario, config)


def test_missing_version(config: RegistryConfig, prompt_name: str) -> None:
    register_prompt_versions(config.tracking_uri, prompt_name, ["one"])

    async def scenario(registry: MlflowRegistry) -> None:
        with pytest.raises(VersionNotFound, match=f"version 7 of prompt '{prompt_name}' does not exist"):
            await one_request(registry, registry.set_alias(prompt_name, "production", 7))
        with pytest.raises(VersionNotFound, match="register that version or pick an existing one"):
            await registry.get_version(prompt_name, 7)
        assert (await registry.get_prompt(prompt_name)).aliases == {}

    run(scenario, config)


def test_missing_alias(config: RegistryConfig, prompt_name: str) -> None:
    register_prompt_versions(config.tracking_uri, prompt_name, ["one"])

    async def scenario(registry: MlflowRegistry) -> None:
        with pytest.raises(AliasNotFound, match=f"prompt '{prompt_name}' has no alias 'production'"):
            await registry.get_version_by_alias(prompt_name, "production")

    run(scenario, config)


def test_missing_prompt(config: RegistryConfig, prompt_name: str) -> None:
    async def scenario(registry: MlflowRegistry) -> None:
        for call in (
            registry.get_prompt(prompt_name),
            registry.get_version_by_alias(prompt_name, "production"),
            registry.delete_alias(prompt_name, "production"),
            registry.set_prompt_tag(prompt_name, "k", "v"),
        ):
            with pytest.raises(PromptNotFound, match=f"prompt '{prompt_name}' does not exist in MLflow at"):
                await call
        # For writes MLflow only says the version is missing.
        with pytest.raises(VersionNotFound, match="or the prompt itself does not exist"):
            await registry.set_alias(prompt_name, "production", 1)
        assert await registry.list_versions(prompt_name) == []

    run(scenario, config)


def test_registered_model_that_is_not_a_prompt(config: RegistryConfig, prompt_name: str) -> None:
    register_model(config.tracking_uri, prompt_name)

    async def scenario(registry: MlflowRegistry) -> None:
        with pytest.raises(NotAPrompt, match="is a registered model, not a prompt"):
            await registry.get_prompt(prompt_name)
        with pytest.raises(NotAPrompt):
            await registry.get_version(prompt_name, 1)
        assert await registry.search_prompts(f"name = '{prompt_name}'") == []

    run(scenario, config)


def test_reserved_alias_names_are_rejected(config: RegistryConfig, prompt_name: str) -> None:
    register_prompt_versions(config.tracking_uri, prompt_name, ["one"])

    async def scenario(registry: MlflowRegistry) -> None:
        for alias in ("latest", "v3"):
            with pytest.raises(RegistryRejected, match="reserved") as info:
                await registry.set_alias(prompt_name, alias, 1)
            assert not info.value.retryable

    run(scenario, config)


def test_chat_template_response_format_and_model_config_round_trip(
    config: RegistryConfig, prompt_name: str, mlflow_client: Any
) -> None:
    register_prompt_versions(
        config.tracking_uri,
        prompt_name,
        ["plain {{x}}", CHAT],
        response_format=SCHEMA,
        model_config={"model_name": "gpt-4o", "temperature": 0.1, "max_tokens": 500, "seed": 7},
        tags={"approved": "true"},
    )

    async def scenario(registry: MlflowRegistry) -> None:
        text, chat = await registry.get_version(prompt_name, 1), await registry.get_version(prompt_name, 2)
        theirs = mlflow_client.get_prompt_version(prompt_name, 2)
        assert chat.template == CHAT == theirs.template
        assert chat.is_chat
        assert chat.response_format == SCHEMA == theirs.response_format
        assert chat.model_config == theirs.model_config
        assert chat.model_config == {"model_name": "gpt-4o", "temperature": 0.1, "max_tokens": 500, "seed": 7}
        assert chat.tags == {"approved": "true"} == theirs.tags
        assert (chat.commit_message, text.commit_message) == ("v2", "v1")
        assert chat.creation_timestamp_ms == theirs.creation_timestamp
        assert text.template == "plain {{x}}"
        assert not text.is_chat

    run(scenario, config)


def test_versions_are_cached_and_fetched_once(config: RegistryConfig, prompt_name: str) -> None:
    register_prompt_versions(config.tracking_uri, prompt_name, ["one", "two"])

    async def scenario(registry: MlflowRegistry) -> None:
        first = await one_request(registry, registry.get_version(prompt_name, 1))
        before = registry.requests_sent
        assert await registry.get_version(prompt_name, 1) is first
        assert registry.requests_sent == before
        assert await one_request(registry, registry.get_version(prompt_name, 1, use_cache=False)) == first
        # Concurrent misses share one request.
        many = await one_request(
            registry, asyncio.gather(*[registry.get_version(prompt_name, 2) for _ in range(8)])
        )
        assert {id(v) for v in many} == {id(many[0])}
        # A version read through an alias lands in the cache too.
        await registry.set_alias(prompt_name, "production", 2)
        registry.cache.clear()
        await registry.get_version_by_alias(prompt_name, "production")
        before = registry.requests_sent
        await registry.get_version(prompt_name, 2)
        assert registry.requests_sent == before

    run(scenario, config)


def test_cache_is_shared_by_registries_of_the_same_server(config: RegistryConfig, prompt_name: str) -> None:
    register_prompt_versions(config.tracking_uri, prompt_name, ["one"])
    cache = VersionCache()

    async def scenario() -> None:
        async with MlflowRegistry(config, cache=cache) as first:
            await first.get_version(prompt_name, 1)
        async with MlflowRegistry(config, cache=cache) as second:
            await second.get_version(prompt_name, 1)
            assert second.requests_sent == 0
        other = RegistryConfig(config.tracking_uri, workspace="elsewhere")
        assert (other.tracking_uri, other.workspace, prompt_name, 1) not in cache

    asyncio.run(scenario())


def test_tags_on_prompts_and_versions(config: RegistryConfig, prompt_name: str, mlflow_client: Any) -> None:
    register_prompt_versions(config.tracking_uri, prompt_name, ["one"])
    owner_key = "promptalias.io/owner.production"

    async def scenario(registry: MlflowRegistry) -> None:
        await one_request(registry, registry.set_prompt_tag(prompt_name, owner_key, "cluster-a/billing/pa"))
        assert (await registry.get_prompt(prompt_name)).tags[owner_key] == "cluster-a/billing/pa"
        await one_request(registry, registry.delete_prompt_tag(prompt_name, owner_key))
        assert owner_key not in (await registry.get_prompt(prompt_name)).tags

        await registry.get_version(prompt_name, 1)  # cached without the tag
        await one_request(registry, registry.set_version_tag(prompt_name, 1, "approved", "true"))
        # The cached copy takes the tag: the next alias of the prompt needs no read (issue 14).
        assert await no_request(registry, registry.get_version(prompt_name, 1)) == await registry.get_version(
            prompt_name, 1, use_cache=False
        )
        assert (await registry.get_version(prompt_name, 1)).tags == {"approved": "true"}
        assert mlflow_client.get_prompt_version(prompt_name, 1).tags == {"approved": "true"}
        await one_request(registry, registry.delete_version_tag(prompt_name, 1, "approved"))
        assert (await no_request(registry, registry.get_version(prompt_name, 1))).tags == {}
        with pytest.raises(VersionNotFound):
            await registry.set_version_tag(prompt_name, 5, "approved", "true")

    run(scenario, config)


def test_search_prompts_and_list_versions(config: RegistryConfig, prompt_name: str) -> None:
    register_prompt_versions(config.tracking_uri, prompt_name, ["one", "two", "three"])
    register_prompt_versions(config.tracking_uri, prompt_name + "-other", ["x"])

    async def scenario(registry: MlflowRegistry) -> None:
        found = await one_request(registry, registry.search_prompts(f"name LIKE '{prompt_name}%'"))
        assert sorted(p.name for p in found) == [prompt_name, prompt_name + "-other"]
        versions = await one_request(registry, registry.list_versions(prompt_name))
        assert [(v.version, v.template) for v in versions] == [(1, "one"), (2, "two"), (3, "three")]
        before = registry.requests_sent
        assert isinstance(await registry.get_version(prompt_name, 3), PromptVersion)
        assert registry.requests_sent == before

    run(scenario, config)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dead_server_fails_fast() -> None:
    config = RegistryConfig(f"http://127.0.0.1:{closed_port()}", timeout_s=2)

    async def scenario(registry: MlflowRegistry) -> None:
        started = time.monotonic()
        with pytest.raises(
            RegistryUnavailable, match=r"cannot connect to MLflow at http://127\.0\.0\.1:"
        ) as info:
            await registry.get_prompt("anything")
        assert time.monotonic() - started < 1.5  # refused at once, not after the 2 s timeout
        assert info.value.retryable

    run(scenario, config)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_hanging_server_times_out(silent_server: int) -> None:
    config = RegistryConfig(f"http://127.0.0.1:{silent_server}", timeout_s=0.5)

    async def scenario(registry: MlflowRegistry) -> None:
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable, match=r"did not answer get prompt .* within 0.5 s"):
            await registry.get_prompt("anything")
        assert 0.5 <= time.monotonic() - started < 3.0  # the timeout fired (no hidden retries)

    run(scenario, config)


def test_outage_and_recovery_on_the_same_registry(testbed: Testbed, prompt_name: str) -> None:
    register_prompt_versions(testbed.mlflow_uri, prompt_name, ["one"])
    config = RegistryConfig(testbed.mlflow_uri, timeout_s=2)

    async def scenario(registry: MlflowRegistry) -> None:
        await registry.set_alias(prompt_name, "production", 1)  # a pooled keep-alive connection now exists
        # Stop and start from the main thread, blocking the loop: the testbed ties the server to
        # the starting thread (PR_SET_PDEATHSIG), so a worker thread's exit would kill it.
        testbed.mlflow.stop()
        try:
            started = time.monotonic()
            with pytest.raises(RegistryUnavailable):
                await registry.get_prompt(prompt_name)
            # A refused connection fails at once; a bound of a few seconds says "no hidden retries"
            # without timing a loaded machine.
            assert time.monotonic() - started < config.timeout_s + 3
        finally:
            testbed.mlflow.start()
        assert (await registry.get_prompt(prompt_name)).aliases == {"production": 1}

    run(scenario, config)
