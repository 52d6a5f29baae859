"""The process-wide LRU of immutable prompt versions."""

from __future__ import annotations

import pytest

from promptalias.registry import MlflowRegistry, PromptVersion, RegistryConfig, VersionCache
from promptalias.registry.cache import credential_identity


def version(n: int) -> PromptVersion:
    return PromptVersion(
        name="p",
        version=n,
        template=f"t{n}",
        response_format=None,
        model_config=None,
        tags={},
        commit_message=None,
        creation_timestamp_ms=0,
    )


def key(
    n: int,
    uri: str = "http://a",
    workspace: str | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
) -> tuple[str, str, int]:
    config = RegistryConfig(uri, workspace=workspace, username=username, password=password, token=token)
    return (credential_identity(config), "p", n)


def test_least_recently_used_goes_first() -> None:
    cache = VersionCache(maxsize=2)
    cache.put(key(1), version(1))
    cache.put(key(2), version(2))
    assert cache.get(key(1)) == version(1)  # 1 is now the most recent
    cache.put(key(3), version(3))
    assert key(2) not in cache
    assert cache.get(key(1)) == version(1)
    assert cache.get(key(3)) == version(3)
    assert len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 0)


def test_servers_and_workspaces_do_not_mix() -> None:
    cache = VersionCache()
    cache.put(key(1), version(1))
    assert cache.get(key(1, uri="http://b")) is None
    assert cache.get(key(1, workspace="team-a")) is None
    assert cache.misses == 2


def test_credentials_do_not_mix() -> None:
    """One credential's reads are never served to another (or to anonymous) on the same server."""
    cache = VersionCache()
    cache.put(key(1, username="alice", password="a-secret"), version(1))
    assert cache.get(key(1)) is None
    assert cache.get(key(1, username="alice", password="other")) is None
    assert cache.get(key(1, username="bob", password="a-secret")) is None
    assert cache.get(key(1, token="a-secret")) is None
    assert cache.get(key(1, username="alice", password="a-secret")) == version(1)


def test_identity_is_stable_opaque_and_secret_free() -> None:
    secret = "s3cr3t-password-value"
    config = RegistryConfig("http://a/", username="alice", password=secret)
    same = RegistryConfig("http://a", username="alice", password=secret, timeout_s=9)
    identity = credential_identity(config)
    assert identity == credential_identity(same)  # trailing slash and timeout do not authorise
    assert secret not in identity
    assert "alice" not in identity
    assert identity != credential_identity(
        RegistryConfig("http://a", username="alice", password=secret, workspace="w")
    )
    assert MlflowRegistry(config, cache=VersionCache()).identity == identity


def test_discard_and_clear() -> None:
    cache = VersionCache()
    cache.put(key(1), version(1))
    cache.discard(key(1))
    cache.discard(key(1))
    assert cache.get(key(1)) is None
    cache.put(key(2), version(2))
    cache.clear()
    assert len(cache) == 0
    assert (cache.hits, cache.misses) == (0, 0)


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        VersionCache(maxsize=0)
