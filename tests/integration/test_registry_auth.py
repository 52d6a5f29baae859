"""Credentials against a real `mlflow server --app-name basic-auth`."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from promptalias.registry import MlflowRegistry, RegistryAuthError, RegistryConfig, VersionCache
from promptalias.registry.testing import register_prompt_versions
from promptalias.testbed.mlflowserver import ADMIN_USER

pytestmark = pytest.mark.integration

T = TypeVar("T")


def run(scenario: Callable[[MlflowRegistry], Awaitable[T]], config: RegistryConfig) -> T:
    async def main() -> T:
        async with MlflowRegistry(config, cache=VersionCache()) as registry:
            return await scenario(registry)

    return asyncio.run(main())


@pytest.fixture
def admin(basic_auth_mlflow: Any) -> RegistryConfig:
    return RegistryConfig(
        basic_auth_mlflow.uri, username=ADMIN_USER, password=basic_auth_mlflow.admin_password
    )


@pytest.fixture
def auth_prompt(basic_auth_mlflow: Any, prompt_name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", basic_auth_mlflow.admin_password)
    register_prompt_versions(basic_auth_mlflow.uri, prompt_name, ["one", "two"])
    return prompt_name


@pytest.fixture
def reader(basic_auth_mlflow: Any) -> RegistryConfig:
    """A user created through MLflow's auth API; the server's default permission is READ."""
    name, password = f"reader-{uuid.uuid4().hex[:8]}", f"Rd-{uuid.uuid4().hex}"
    token = base64.b64encode(f"{ADMIN_USER}:{basic_auth_mlflow.admin_password}".encode()).decode()
    request = urllib.request.Request(
        f"{basic_auth_mlflow.uri}/api/2.0/mlflow/users/create",
        data=json.dumps({"username": name, "password": password}).encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return RegistryConfig(basic_auth_mlflow.uri, username=name, password=password)


def test_anonymous_requests_are_refused(basic_auth_mlflow: Any, auth_prompt: str) -> None:
    config = RegistryConfig(basic_auth_mlflow.uri)

    async def scenario(registry: MlflowRegistry) -> None:
        for call in (registry.check(), registry.get_prompt(auth_prompt)):
            with pytest.raises(RegistryAuthError, match="configure a token or username/password") as info:
                await call
            assert info.value.status == 401
            assert not info.value.retryable

    run(scenario, config)


def test_wrong_password_is_refused_without_leaking_it(basic_auth_mlflow: Any, auth_prompt: str) -> None:
    wrong = "not-the-password-" + uuid.uuid4().hex
    config = RegistryConfig(basic_auth_mlflow.uri, username=ADMIN_USER, password=wrong)

    async def scenario(registry: MlflowRegistry) -> None:
        with pytest.raises(RegistryAuthError, match="check the token or username/password") as info:
            await registry.set_alias(auth_prompt, "production", 1)
        assert wrong not in str(info.value)
        assert wrong not in repr(info.value)

    run(scenario, config)


def test_bearer_token_is_not_basic_auth(basic_auth_mlflow: Any, auth_prompt: str) -> None:
    # MLflow's basic-auth app knows no tokens: a bearer token (for proxies, Databricks) gets a 401.
    config = RegistryConfig(basic_auth_mlflow.uri, token=basic_auth_mlflow.admin_password)

    async def scenario(registry: MlflowRegistry) -> None:
        with pytest.raises(RegistryAuthError) as info:
            await registry.get_prompt(auth_prompt)
        assert info.value.status == 401

    run(scenario, config)


def test_admin_credentials_work(admin: RegistryConfig, auth_prompt: str) -> None:
    async def scenario(registry: MlflowRegistry) -> None:
        info = await registry.check()
        assert info.authenticated
        await registry.set_alias(auth_prompt, "production", 2)
        assert (await registry.get_prompt(auth_prompt)).aliases == {"production": 2}
        assert (await registry.get_version_by_alias(auth_prompt, "production")).template == "two"
        await registry.delete_alias(auth_prompt, "production")

    run(scenario, admin)


def test_read_only_user_can_read_but_not_move_aliases(reader: RegistryConfig, auth_prompt: str) -> None:
    async def scenario(registry: MlflowRegistry) -> None:
        await registry.check()
        assert (await registry.get_prompt(auth_prompt)).aliases == {}
        with pytest.raises(RegistryAuthError, match="lacks permission") as info:
            await registry.set_alias(auth_prompt, "production", 1)
        assert info.value.status == 403

    run(scenario, reader)
