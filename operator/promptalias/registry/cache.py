"""A bounded, process-wide LRU of prompt versions.

Prompt versions are immutable in MLflow, so what a version holds can be kept for the life of
the process: the operator then moves an alias with a single POST instead of re-reading the
version each time. Keys start with the credential identity (server, workspace and credentials),
so one client's reads are never served to a client with other credentials: a namespace whose
credentials MLflow refuses must not get, from the cache, what another namespace was allowed to read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from typing import Final

from promptalias.registry.config import RegistryConfig
from promptalias.registry.models import PromptVersion

CacheKey = tuple[str, str, int]  # (credential identity, prompt, version)

# Identities are keyed with a random per-process secret: equal within the process, meaningless (and
# not a password hash anyone could test guesses against) outside it.
_IDENTITY_KEY: Final = secrets.token_bytes(32)


def credential_identity(config: RegistryConfig) -> str:
    """Who MLflow sees: the server, workspace and credentials of `config`, as an opaque digest.

    Two configs have the same identity exactly when they would be authorised alike; the secret
    material goes into a keyed hash only, never into the identity itself.
    """
    parts = (
        config.tracking_uri,
        config.workspace or "",
        config.auth_kind,
        config.username or "",
        config.password or "",
        config.token or "",
    )
    material = "\0".join(parts).encode("utf-8", "surrogateescape")
    return "cred:" + hmac.new(_IDENTITY_KEY, material, hashlib.sha256).hexdigest()


DEFAULT_MAXSIZE = 1024


class VersionCache:
    def __init__(self, maxsize: int = DEFAULT_MAXSIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: OrderedDict[CacheKey, PromptVersion] = OrderedDict()
        # Registries normally live on one event loop; the lock covers tests and tools that use
        # several loops in threads.
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> PromptVersion | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def peek(self, key: CacheKey) -> PromptVersion | None:
        """The cached value without counting a hit or a miss."""
        with self._lock:
            return self._items.get(key)

    def put(self, key: CacheKey, value: PromptVersion) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def discard(self, key: CacheKey) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


shared_cache = VersionCache()
