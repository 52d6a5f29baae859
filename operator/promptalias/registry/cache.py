"""A bounded, process-wide LRU of prompt versions.

Prompt versions are immutable in MLflow, so what a version holds can be kept for the life of
the process: the operator then moves an alias with a single POST instead of re-reading the
version each time. Keys name the server and workspace, so registries for different servers
share the cache without mixing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from promptalias.registry.models import PromptVersion

CacheKey = tuple[str, str | None, str, int]  # (tracking_uri, workspace, prompt, version)

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
