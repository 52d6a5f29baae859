"""The CLI's MLflow access: the user's own credentials, never the operator's Secrets.

The URL comes from the PromptRegistry (or --registry-uri, or $MLFLOW_TRACKING_URI); credentials and
TLS from the MLFLOW_TRACKING_* variables MLflow's own client reads. Calls go through
`promptalias.registry` (imported lazily: aiohttp is heavy), and its errors become `CliError`s that
say what to do (port-forward an in-cluster URL, set a token, list the versions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from promptalias.cli.cluster import Cluster
from promptalias.cli.errors import CliError
from promptalias.cli.formatting import dig

if TYPE_CHECKING:
    from promptalias.registry import MlflowRegistry, RegistryConfig


def registry_config(
    tracking_uri: str,
    env: Mapping[str, str],
    *,
    workspace: str | None = None,
    insecure_skip_verify: bool = False,
    timeout_s: float = 10.0,
) -> RegistryConfig:
    """Connection settings for the user's own MLflow access: the URI from the registry (or
    --registry-uri), credentials and TLS from the MLFLOW_TRACKING_* variables MLflow's client reads."""
    from promptalias.registry import RegistryConfig

    username = env.get("MLFLOW_TRACKING_USERNAME") or None
    password = env.get("MLFLOW_TRACKING_PASSWORD") or None
    if (username is None) != (password is None):
        raise CliError(
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD must be set together",
            "set both (Basic auth), or unset both and use MLFLOW_TRACKING_TOKEN",
        )
    insecure = env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in {"1", "true", "yes"}
    try:
        return RegistryConfig(
            tracking_uri=tracking_uri,
            token=env.get("MLFLOW_TRACKING_TOKEN") or None,
            username=username,
            password=password,
            ca_file=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None,
            insecure_skip_verify=insecure_skip_verify or insecure,
            timeout_s=timeout_s,
            workspace=workspace,
        )
    except ValueError as exc:
        raise CliError(
            f"cannot use MLflow at {tracking_uri!r}: {exc}",
            "pass --registry-uri with the server's http(s) URL",
        ) from None


def config_from_registry(
    registry: Mapping[str, Any], env: Mapping[str, str], override_uri: str | None, timeout_s: float
) -> RegistryConfig:
    """Settings from a PromptRegistry/ClusterPromptRegistry object: its trackingUri (unless
    overridden), workspace and tls.insecureSkipVerify; credentials from `env`."""
    spec = registry.get("spec") or {}
    return registry_config(
        override_uri or str(spec.get("trackingUri") or ""),
        env,
        workspace=spec.get("workspace"),
        insecure_skip_verify=bool(dig(spec, "tls", "insecureSkipVerify")),
        timeout_s=timeout_s,
    )


def registry_of_alias(cluster: Cluster, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The PromptRegistry or ClusterPromptRegistry a PromptAlias names in spec.registryRef."""
    ref = dig(obj, "spec", "registryRef") or {}
    kind = str(ref.get("kind") or "PromptRegistry")
    return cluster.get_registry(kind, str(dig(obj, "metadata", "namespace")), str(ref.get("name")))


def registry_error(exc: Exception, uri: str) -> CliError:
    """A RegistryError as advice."""
    from promptalias.registry import PromptNotFound, RegistryAuthError, RegistryNotFound, RegistryUnavailable

    text = " ".join(str(exc).split())
    if isinstance(exc, RegistryAuthError):
        return CliError(
            text,
            "set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, "
            "to credentials MLflow accepts (the CLI never reads the operator's Secret)",
        )
    if isinstance(exc, RegistryUnavailable):
        return CliError(
            text,
            f"if {uri} only resolves inside the cluster, port-forward the MLflow Service "
            "(kubectl port-forward svc/<mlflow> 5000) and pass --registry-uri http://127.0.0.1:5000",
        )
    if isinstance(exc, PromptNotFound | RegistryNotFound):
        return CliError(text, "list the versions with `promptalias versions <prompt>`")
    return CliError(text, "check the registry URI and the MLflow server")


def run_registry(config: RegistryConfig, work: Callable[[MlflowRegistry], Any]) -> Any:
    """Run `await work(registry)` against MLflow, its failures turned into CliErrors."""
    from promptalias.registry import MlflowRegistry, RegistryError, VersionCache

    async def session() -> Any:
        async with MlflowRegistry(config, cache=VersionCache()) as registry:
            return await work(registry)

    try:
        return asyncio.run(session())
    except RegistryError as exc:
        raise registry_error(exc, config.tracking_uri) from None
