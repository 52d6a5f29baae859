"""The in-memory prompt store: a dict lookup on the request path, refreshed by background threads.

Request path: `PromptStore.load` reads an immutable `dict[uri, Prompt]` that the threads replace as a
whole (one atomic assignment), so a read never takes a lock and never waits for I/O. Only the first
load of a URI resolves it synchronously (files → sidecar → MLflow → last-known-good copy).

Threads (daemons, started on the first load, restarted after fork):
- `promptalias-files`   stats the projected files every `poll_interval` (default 20 ms) and re-reads a
                        file whose inode/size/mtime changed; the `..data` swap gives every update a new
                        inode, so a change is seen within one interval;
- `promptalias-sidecar` long-polls the sidecar's index (`GET /prompts?wait=30`) and refetches at once;
- `promptalias-refresh` re-resolves prompts that came from MLflow or the disk copy every
                        `refresh_interval` (default 10 s), so they return to the projection when it appears.

Over 400 lines on purpose: the store and its three refresh threads share one lock-free snapshot
protocol (replace the dict whole); the sources they read are in _sources.py.
"""

from __future__ import annotations

import os
import sys
import time
import weakref

from promptalias.client._document import InvalidDocumentError, canonical_json
from promptalias.client._observe import CURRENT_PROMPT, logger, prometheus_counter, record_in_trace
from promptalias.client._prompt import Prompt, prompt_from_document
from promptalias.client._sources import DiskCache, FileSource, MlflowSource, SidecarSource, SourceMiss
from promptalias.client._uri import PromptRef, parse_uri

TYPE_CHECKING = False  # typing, logging and threading load on first use: the client must import fast
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Mapping
    from typing import Any, Final, Literal, Protocol, overload

    class LoadPrompt(Protocol):
        """`load_prompt` and `PromptStore.load`: a Prompt; only allow_missing=True can give None.

        Typed overloads without importing `typing` at run time (it would cost the import budget).
        """

        @overload
        def __call__(
            self,
            name_or_uri: str,
            version: str | int | None = None,
            *,
            key: object = None,
            allow_missing: Literal[False] = False,
        ) -> Prompt: ...

        @overload
        def __call__(
            self,
            name_or_uri: str,
            version: str | int | None = None,
            *,
            key: object = None,
            allow_missing: bool,
        ) -> Prompt | None: ...


DEFAULT_PROMPTS_DIR: Final = "/var/run/promptalias/prompts"
SIDECAR_WAIT: Final = 30.0
_modules_get = sys.modules.get


class PromptNotFoundError(LookupError):
    """No source could provide the prompt; `attempts` lists (source, reason) in the order tried."""

    def __init__(self, uri: str, attempts: list[tuple[str, str]]) -> None:
        self.uri = uri
        self.attempts = list(attempts)
        tried = "; ".join(f"{source}: {reason}" for source, reason in attempts) or "no source is configured"
        super().__init__(
            f"prompt {uri} not found (tried {tried}). Check that a PromptAlias for this prompt and alias "
            "exists in the pod's namespace and that its projection is mounted (PROMPTALIAS_PROMPTS_DIR) or "
            "the sidecar runs (PROMPTALIAS_SIDECAR_URL); MLFLOW_TRACKING_URI enables the MLflow fallback."
        )


class _Entry:
    __slots__ = ("content", "file_sig", "prompt", "ref", "source")

    def __init__(self, ref: PromptRef) -> None:
        self.ref = ref
        self.prompt: Prompt | None = None
        self.source = ""
        self.content = ""  # canonical document without "updated": equal content → nothing to swap
        self.file_sig: tuple[int, int, int] | None = None


def _content(doc: Mapping[str, Any]) -> str:
    return canonical_json({k: v for k, v in doc.items() if k != "updated"})


_STORES: weakref.WeakSet[PromptStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store._after_fork()  # the store's own fork hook


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class PromptStore:
    """Resolves prompt URIs and keeps the answers fresh; see the module docstring.

    Most apps use the process-wide store behind `load_prompt` (configured from the environment);
    build one directly for explicit settings or tests.
    """

    def __init__(
        self,
        *,
        prompts_dir: str | None = DEFAULT_PROMPTS_DIR,
        sidecar_url: str | None = None,
        tracking_uri: str | None = None,
        cache_dir: str | None = None,
        poll_interval: float = 0.02,
        refresh_interval: float = 10.0,
        timeout: float = 3.0,
        watch: bool = True,
        metrics: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.files = FileSource(prompts_dir) if prompts_dir else None
        self.sidecar = SidecarSource(sidecar_url, timeout) if sidecar_url else None
        self.mlflow: MlflowSource | None = None
        if tracking_uri and tracking_uri.startswith(("http://", "https://")):
            self.mlflow = MlflowSource(
                tracking_uri, timeout, dict(environ if environ is not None else os.environ)
            )
        elif tracking_uri:
            logger().warning(
                "promptalias: MLFLOW_TRACKING_URI %r is not an http(s) server; the MLflow fallback is off",
                tracking_uri,
            )
        self.cache = DiskCache(cache_dir) if cache_dir else None
        self.poll_interval = poll_interval
        self.refresh_interval = refresh_interval
        self.watch = watch
        self._by_uri: dict[str, Prompt] = {}
        self._uri_refs: dict[str, PromptRef] = {}
        self._entries: dict[PromptRef, _Entry] = {}
        self._ref_locks: dict[PromptRef, threading.Lock] = {}
        self._saved: dict[PromptRef, str] = {}
        self._warned: set[str] = set()
        self._count: Callable[[Prompt], None] | None = prometheus_counter() if metrics else None
        self._closed = False
        self._sidecar_ok = False
        self._threads: list[threading.Thread] = []
        self._init_sync()
        _STORES.add(self)

    def _init_sync(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._wake_files = threading.Event()
        self._wake_refresh = threading.Event()
        self._threads = []

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PromptStore:
        """Settings from the environment (docs/contracts.md, "Client settings")."""
        env = os.environ if environ is None else environ

        def seconds(name: str, default: float) -> float:
            try:
                return float(env.get(name, default))
            except ValueError:
                logger().warning(
                    "promptalias: %s=%r is not a number of seconds; using %s", name, env[name], default
                )
                return default

        cache_dir = env.get("PROMPTALIAS_CACHE_DIR")
        if cache_dir is None:
            base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            cache_dir = os.path.join(base, "promptalias", "prompts")
        return cls(
            prompts_dir=env.get("PROMPTALIAS_PROMPTS_DIR", DEFAULT_PROMPTS_DIR) or None,
            sidecar_url=env.get("PROMPTALIAS_SIDECAR_URL") or None,
            tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
            cache_dir=cache_dir or None,
            poll_interval=seconds("PROMPTALIAS_POLL_INTERVAL", 0.02),
            refresh_interval=seconds("PROMPTALIAS_REFRESH_INTERVAL", 10.0),
            timeout=seconds("PROMPTALIAS_TIMEOUT", 3.0),
            metrics=env.get("PROMPTALIAS_CLIENT_METRICS", "1") != "0",
            environ=env,
        )

    def __repr__(self) -> str:
        sources = [repr(s) for s in (self.files, self.sidecar, self.mlflow, self.cache) if s is not None]
        return f"PromptStore({', '.join(sources)})"

    # ----------------------------------------------------------------------------------------------
    # Request path
    if TYPE_CHECKING:
        load: LoadPrompt

    def load(  # type: ignore[no-redef]
        self,
        name_or_uri: str,
        version: str | int | None = None,
        *,
        key: object = None,
        allow_missing: bool = False,
    ) -> Prompt | None:
        """The prompt for a URI (or a name plus `version`, an alias or a number, as in MLflow).

        `key` routes an A/B experiment (same key → same arm everywhere); without a key, or without an
        experiment, the baseline is returned. Raises PromptNotFoundError unless `allow_missing`.
        """
        if version is not None:
            name_or_uri = _compose_uri(name_or_uri, version)
        prompt = self._by_uri.get(name_or_uri)
        if prompt is None:
            prompt = self._load_slow(name_or_uri, allow_missing=allow_missing)
            if prompt is None:
                return None
        if key is not None and prompt._threshold:  # hot path, avoid a call
            prompt = prompt.route(key)
        CURRENT_PROMPT.set(prompt)
        if _modules_get("mlflow.tracing.provider") is not None:
            record_in_trace(prompt)
        count = self._count
        if count is not None:
            count(prompt)
        return prompt

    # ----------------------------------------------------------------------------------------------
    # First load of a URI
    def _load_slow(self, uri: str, *, allow_missing: bool) -> Prompt | None:
        import threading

        ref = parse_uri(uri)
        entry = self._entries.get(ref)
        if entry is None:
            lock = self._ref_locks.setdefault(ref, threading.Lock())
            with lock:
                entry = self._entries.get(ref)
                if entry is None:
                    entry = _Entry(ref)
                    try:
                        self._resolve_into(entry, include_cache=True)
                    except PromptNotFoundError:
                        if allow_missing:
                            return None
                        raise
                    with self._lock:
                        self._entries[ref] = entry
        with self._lock:
            self._uri_refs[uri] = ref
            self._publish()
        self._ensure_threads()
        return entry.prompt

    def _sources(self, *, include_cache: bool) -> list[FileSource | SidecarSource | MlflowSource | DiskCache]:
        chain: list[FileSource | SidecarSource | MlflowSource | DiskCache] = []
        for source in (self.files, self.sidecar, self.mlflow):
            if source is not None:
                chain.append(source)
        if include_cache and self.cache is not None:
            chain.append(self.cache)
        return chain

    def _resolve_into(self, entry: _Entry, *, include_cache: bool) -> None:
        ref = entry.ref
        attempts: list[tuple[str, str]] = []
        for source in self._sources(include_cache=include_cache):
            sig = None
            if isinstance(source, FileSource) and ref.alias is not None:
                sig = source.stat(ref.key)
            try:
                doc = source.fetch(ref)
            except SourceMiss as miss:
                attempts.append((repr(source), miss.reason))
                continue
            if sig is not None:
                entry.file_sig = sig
            if source is self.cache:
                logger().warning(
                    "promptalias: serving the last-known-good copy of %s (version %s) because %s",
                    ref.uri,
                    doc.get("version"),
                    "; ".join(f"{s}: {r}" for s, r in attempts) or "no live source is configured",
                )
            self._install(entry, doc, source.name)
            return
        raise PromptNotFoundError(ref.uri, attempts)

    def _install(self, entry: _Entry, doc: dict[str, Any], source: str) -> None:
        """Make `doc` the entry's current prompt (if its content changed) and save a copy."""
        content = _content(doc)
        if content == entry.content and entry.prompt is not None and entry.prompt.source == source:
            return
        prompt = prompt_from_document(doc, source=source, pinned=entry.ref.alias is None)
        old = entry.prompt
        with self._lock:
            entry.prompt = prompt
            entry.source = source
            entry.content = content
            if entry.ref in self._entries:
                self._publish()
        if old is not None and (old.version, old.digest) != (prompt.version, prompt.digest):
            logger().info(
                "promptalias: %s now serves version %s (was %s), from %s",
                entry.ref.uri,
                prompt.version,
                old.version,
                source,
            )
        elif old is not None:
            logger().info("promptalias: %s now comes from %s (was %s)", entry.ref.uri, source, old.source)
        if source != "cache":
            self._save_copy(entry.ref, doc, content)

    def _publish(self) -> None:
        # Called with self._lock held: build a new dict and swap it in with one assignment.
        entries = self._entries
        self._by_uri = {
            uri: prompt
            for uri, ref in self._uri_refs.items()
            if (entry := entries.get(ref)) is not None and (prompt := entry.prompt) is not None
        }

    def _save_copy(self, ref: PromptRef, doc: dict[str, Any], content: str) -> None:
        cache = self.cache
        if cache is None or self._saved.get(ref) == content:
            return
        try:
            cache.save(ref, doc)
        except OSError as exc:
            self._warn_once(
                f"cache:{cache.directory}",
                "promptalias: cannot keep last-known-good copies in %s (%s); set PROMPTALIAS_CACHE_DIR "
                "to a writable directory",
                cache.directory,
                exc,
            )
            return
        self._saved[ref] = content

    def _warn_once(self, token: str, message: str, *args: object) -> None:
        if token not in self._warned:
            self._warned.add(token)
            logger().warning(message, *args)

    # ----------------------------------------------------------------------------------------------
    # Background refresh
    def _ensure_threads(self) -> None:
        if self._threads or not self.watch or self._closed:
            return
        import threading

        with self._lock:
            if self._threads:
                return
            targets: list[tuple[str, Callable[[], None]]] = [("promptalias-refresh", self._refresh_loop)]
            if self.files is not None:
                targets.append(("promptalias-files", self._files_loop))
            if self.sidecar is not None:
                targets.append(("promptalias-sidecar", self._sidecar_loop))
            for name, target in targets:
                thread = threading.Thread(target=self._guard(target), name=name, daemon=True)
                self._threads.append(thread)
                thread.start()

    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self._closed:
                try:
                    loop()
                except Exception:  # noqa: BLE001 -- a bug here must not stop refreshes for good
                    logger().exception("promptalias: background refresh failed; retrying in 1 s")
                    time.sleep(1.0)

        return run

    def _snapshot(self) -> list[_Entry]:
        with self._lock:
            return list(self._entries.values())

    def _files_loop(self) -> None:
        while not self._closed:
            self._wake_files.wait(self.poll_interval)
            self._wake_files.clear()
            self.check_files()

    def check_files(self) -> None:
        """One pass of the file watcher (also callable directly, e.g. from tests)."""
        files = self.files
        if files is None:
            return
        for entry in self._snapshot():
            ref = entry.ref
            if ref.alias is None:
                continue  # a pinned version never changes
            sig = files.stat(ref.key)
            if sig == entry.file_sig:
                continue
            entry.file_sig = sig
            path = os.path.join(files.directory, ref.key)
            if sig is None:
                if entry.source == "files":
                    entry.source = "files-gone"
                    self._warn_once(
                        f"gone:{path}",
                        "promptalias: %s disappeared; still serving version %s and asking the other sources",
                        path,
                        entry.prompt.version if entry.prompt else "?",
                    )
                    self._wake_refresh.set()
                continue
            try:
                doc = files.read(ref.key)
            except FileNotFoundError:
                entry.file_sig = None
                continue
            except (OSError, InvalidDocumentError) as exc:
                logger().warning(
                    "promptalias: ignoring %s (%s); still serving version %s",
                    path,
                    exc,
                    entry.prompt.version if entry.prompt else "?",
                )
                continue
            if doc["name"] != ref.name or doc["alias"] != ref.alias:
                logger().warning("promptalias: ignoring %s: it holds %s@%s", path, doc["name"], doc["alias"])
                continue
            self._install(entry, doc, "files")

    def _sidecar_loop(self) -> None:
        sidecar = self.sidecar
        assert sidecar is not None
        etag: str | None = None
        backoff = 0.5
        while not self._closed:
            try:
                new = sidecar.wait_for_change(etag, SIDECAR_WAIT)
            except OSError as exc:
                self._sidecar_ok = False
                self._warn_once(
                    f"sidecar-down:{sidecar.url}", "promptalias: sidecar %s unreachable: %s", sidecar.url, exc
                )
                self._wake_refresh.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            self._sidecar_ok = True
            self._warned.discard(f"sidecar-down:{sidecar.url}")
            if new == etag:
                continue
            etag = new
            # The sidecar bumps its ETag after writing its files: check those first, then what it serves.
            self.check_files()
            for entry in self._snapshot():
                if entry.source == "sidecar" and entry.ref.alias is not None:
                    try:
                        self._install(entry, sidecar.fetch(entry.ref), "sidecar")
                    except SourceMiss as miss:
                        logger().warning(
                            "promptalias: sidecar refresh of %s failed: %s", entry.ref.uri, miss.reason
                        )

    def _refresh_loop(self) -> None:
        while not self._closed:
            self._wake_refresh.wait(self.refresh_interval)
            self._wake_refresh.clear()
            if not self._closed:
                self.refresh_fallbacks()

    def refresh_fallbacks(self) -> None:
        """Re-resolve what came from MLflow, the disk copy, a vanished file or an unwatched sidecar."""
        for entry in self._snapshot():
            if entry.ref.alias is None:
                continue  # a pinned version is immutable: whatever we hold is right
            if entry.source == "files" or (entry.source == "sidecar" and self._sidecar_ok):
                continue
            try:
                self._resolve_into(entry, include_cache=False)
            except PromptNotFoundError as exc:
                self._warn_once(
                    f"stale:{entry.ref.uri}:{entry.content[-64:]}",
                    "promptalias: cannot refresh %s, still serving version %s: %s",
                    entry.ref.uri,
                    entry.prompt.version if entry.prompt else "?",
                    "; ".join(f"{s}: {r}" for s, r in exc.attempts),
                )

    # ----------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the background threads (the store keeps answering from memory)."""
        import threading

        self._closed = True
        self._wake_files.set()
        self._wake_refresh.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=1.0)

    def _after_fork(self) -> None:
        # Threads do not survive fork (gunicorn --preload, multiprocessing): start fresh ones.
        self._init_sync()
        self._ref_locks = {}
        if self._entries and not self._closed:
            self._ensure_threads()


def _compose_uri(name_or_uri: str, version: str | int) -> str:
    if name_or_uri.startswith("prompts:/"):
        raise ValueError("pass either a prompts:/ URI or a name with version=, not both")
    text = str(version)
    return (
        f"prompts:/{name_or_uri}/{text}"
        if text.isascii() and text.isdigit()
        else f"prompts:/{name_or_uri}@{text}"
    )
