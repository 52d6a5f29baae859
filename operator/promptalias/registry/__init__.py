"""The only code that talks to MLflow: an async client over MLflow's REST API.

    async with MlflowRegistry(RegistryConfig("http://mlflow:5000", token=...)) as registry:
        state = await registry.get_prompt("invoice-parser")        # all aliases, one request
        version = await registry.get_version("invoice-parser", 3)  # cached for ever
        await registry.set_alias("invoice-parser", "production", 3)  # one POST

Importing this package does not import `mlflow` (about 1 s); `promptalias.registry.testing`
does, and is meant for tests, fixtures and benchmarks only.
"""

from promptalias.registry.cache import VersionCache, shared_cache
from promptalias.registry.client import MlflowRegistry
from promptalias.registry.config import RegistryConfig
from promptalias.registry.errors import (
    AliasNotFound,
    NotAPrompt,
    PromptNotFound,
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    RegistryProtocolError,
    RegistryRejected,
    RegistryTLSError,
    RegistryUnavailable,
    VersionNotFound,
)
from promptalias.registry.models import PromptState, PromptVersion, ServerInfo

__all__ = [
    "AliasNotFound",
    "MlflowRegistry",
    "NotAPrompt",
    "PromptNotFound",
    "PromptState",
    "PromptVersion",
    "RegistryAuthError",
    "RegistryConfig",
    "RegistryError",
    "RegistryNotFound",
    "RegistryProtocolError",
    "RegistryRejected",
    "RegistryTLSError",
    "RegistryUnavailable",
    "ServerInfo",
    "VersionCache",
    "VersionNotFound",
    "shared_cache",
]
