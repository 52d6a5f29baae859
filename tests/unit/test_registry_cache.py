"""The process-wide LRU of immutable prompt versions."""

from __future__ import annotations

import pytest

from promptalias.registry import PromptVersion, VersionCache


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


def key(n: int, uri: str = "http://a", workspace: str | None = None) -> tuple[str, str | None, str, int]:
    return (uri, workspace, "p", n)


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
