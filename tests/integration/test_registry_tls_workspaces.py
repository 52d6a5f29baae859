"""TLS and MLflow workspaces, against one real `mlflow server --enable-workspaces` serving https.

The shared testbed's MLflow is plain http without workspaces, so this module runs its own server
(one for both features: each start costs 5-10 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from promptalias.registry import (
    MlflowRegistry,
    RegistryConfig,
    RegistryError,
    RegistryRejected,
    RegistryTLSError,
    ServerInfo,
    VersionCache,
)
from promptalias.registry.testing import client, spawn_mlflow_server
from promptalias.testbed import Testbed
from promptalias.testbed.certs import Pki, write_pki

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class HttpsMlflow:
    uri: str
    pki: Pki

    def config(self, **kwargs: object) -> RegistryConfig:
        kwargs.setdefault("ca_data", self.pki.ca_crt.read_text())
        return RegistryConfig(self.uri, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def https_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsMlflow]:
    from mlflow.utils.workspace_context import WorkspaceContext

    run_dir = tmp_path_factory.mktemp("https-mlflow")
    pki = write_pki(run_dir / "pki")  # the serving certificate names 127.0.0.1 and localhost
    tls = (pki.serving_crt, pki.serving_key, pki.ca_crt)
    with spawn_mlflow_server(run_dir, "--enable-workspaces", tls=tls) as uri:
        server = HttpsMlflow(uri, pki)
        # MLflow's own client verifies with requests, which reads the CA from this variable.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_crt))
            mlflow_client = client(uri)
            mlflow_client.create_workspace("team-a")
            with WorkspaceContext("team-a"):
                mlflow_client.register_prompt("shared-name", "from team-a")
            mlflow_client.register_prompt("shared-name", "from default v1")
            mlflow_client.register_prompt("shared-name", "from default v2")
        yield server


def check(config: RegistryConfig) -> ServerInfo:
    async def main() -> ServerInfo:
        async with MlflowRegistry(config, cache=VersionCache()) as registry:
            return await registry.check()

    return asyncio.run(main())


def test_ca_data_verifies_the_server(https_mlflow: HttpsMlflow) -> None:
    assert check(https_mlflow.config()).version


def test_ca_file_and_host_name(https_mlflow: HttpsMlflow) -> None:
    uri = https_mlflow.uri.replace("127.0.0.1", "localhost")
    check(RegistryConfig(uri, ca_file=str(https_mlflow.pki.ca_crt)))


def test_unknown_ca_is_a_tls_error(https_mlflow: HttpsMlflow) -> None:
    with pytest.raises(RegistryTLSError, match="certificate verification failed") as info:
        check(RegistryConfig(https_mlflow.uri))
    assert "set the registry's CA bundle" in str(info.value)
    assert info.value.retryable


def test_insecure_skip_verify(https_mlflow: HttpsMlflow) -> None:
    check(RegistryConfig(https_mlflow.uri, insecure_skip_verify=True))


def test_plain_http_to_an_https_server_fails_instead_of_hanging(https_mlflow: HttpsMlflow) -> None:
    with pytest.raises(RegistryError):
        check(RegistryConfig(https_mlflow.uri.replace("https://", "http://"), timeout_s=2))


def test_each_workspace_sees_its_own_prompts(https_mlflow: HttpsMlflow) -> None:
    cache = VersionCache()

    async def main() -> None:
        async with MlflowRegistry(https_mlflow.config(workspace="team-a"), cache=cache) as team:
            assert (await team.check()).workspace == "team-a"
            assert (await team.get_prompt("shared-name")).latest_version == 1
            assert (await team.get_version("shared-name", 1)).template == "from team-a"
            await team.set_alias("shared-name", "production", 1)
        async with MlflowRegistry(https_mlflow.config(), cache=cache) as default:
            # Same server, name and version number: the cache must not mix workspaces.
            assert (await default.get_version("shared-name", 1)).template == "from default v1"
            assert (await default.get_prompt("shared-name")).aliases == {}

    asyncio.run(main())


def test_unknown_workspace_is_a_config_error(https_mlflow: HttpsMlflow) -> None:
    async def main() -> None:
        async with MlflowRegistry(https_mlflow.config(workspace="nope")) as registry:
            with pytest.raises(RegistryRejected, match="create workspace 'nope' in MLflow"):
                await registry.get_prompt("shared-name")

    asyncio.run(main())


def test_workspace_on_a_server_without_workspaces(testbed: Testbed) -> None:
    async def main() -> None:
        async with MlflowRegistry(RegistryConfig(testbed.mlflow_uri, workspace="team-a")) as registry:
            with pytest.raises(RegistryRejected, match="--enable-workspaces"):
                await registry.check()

    asyncio.run(main())
