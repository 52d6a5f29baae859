"""Synchronous helpers for tests, fixtures, demos and benchmarks, built on the `mlflow` package.

They register prompts the way users do (MLflow's own client), so the async registry is tested
against what MLflow really writes. Importing this module imports `mlflow` (about 1 s): never
import it from operator code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlflow import MlflowClient

from promptalias.registry.models import Template


def client(uri: str) -> Any:
    """An MlflowClient bound to `uri` for both tracking and the registry (no global state)."""
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def register_prompt_versions(
    uri: str,
    name: str,
    templates: Sequence[Template],
    *,
    response_format: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> list[int]:
    """Register each template as the next version of prompt `name`; return the version numbers.
    Commit messages are "v1", "v2"... by position, so tests can tell versions apart."""
    mlflow_client = client(uri)
    versions = []
    for i, template in enumerate(templates, start=1):
        registered = mlflow_client.register_prompt(
            name=name,
            template=template,
            commit_message=f"v{i}",
            tags=tags,
            response_format=response_format,
            model_config=model_config,
        )
        versions.append(int(registered.version))
    return versions


def register_model(uri: str, name: str) -> None:
    """A plain registered model (not a prompt) with one version, for negative tests."""
    mlflow_client = client(uri)
    mlflow_client.create_registered_model(name)
    mlflow_client.create_model_version(name=name, source="s3://bucket/model")


def set_alias_with_mlflow(uri: str, name: str, alias: str, version: int) -> None:
    """MLflow's own way to move an alias (three HTTP requests), as users do from notebooks."""
    client(uri).set_prompt_alias(name, alias, version)
