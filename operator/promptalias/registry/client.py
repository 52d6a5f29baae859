"""Async client over MLflow's REST API for the operator's hot path.

One HTTP request per operation (MLflow's own `set_prompt_alias` makes three), one aiohttp
session per registry (created lazily on the running loop), short timeouts and no retries: the
caller (kopf) retries with backoff. Deliberately free of `mlflow` imports, which cost ~1 s.

Over 400 lines on purpose: one method per REST endpoint over the one request path they share
(deadline, connection slots, bounded reads, error mapping); apart, the endpoints would drift from it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar, Unpack
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from promptalias.registry.cache import CacheKey, VersionCache, credential_identity, shared_cache
from promptalias.registry.config import RegistryConfig
from promptalias.registry.errors import (
    Call,
    RegistryProtocolError,
    RegistryTLSError,
    RegistryUnavailable,
    describe_body,
    error_from_response,
    not_a_prompt,
)
from promptalias.registry.models import (
    IS_PROMPT_TAG,
    PromptState,
    PromptVersion,
    ServerInfo,
    parse_prompt,
    parse_server_version,
    parse_version,
)

log = logging.getLogger(__name__)
_Item = TypeVar("_Item")  # what one search returns a list of (prompts, versions)

API = "/api/2.0/mlflow"
WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"  # mlflow.utils.workspace_utils.WORKSPACE_HEADER_NAME
_PROMPT_FILTER = f"tags.`{IS_PROMPT_TAG}` = 'true'"
_VERSION_FILTER_TAG = f"tag.`{IS_PROMPT_TAG}` = 'true'"
_SEARCH_PAGE = 1000  # the server's cap for registered-models/search
# Bounded reads: no answer of MLflow's REST API the operator uses comes near this (a prompt version
# is at most a ConfigMap's 1 MiB to be projected; a search page is 1000 prompts with their tags).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_PAGES = 100  # search/list: at most 100 pages of 1000 (a server repeating a page token stops too)
MAX_CONNECTIONS = 32  # requests in flight per registry client (and its connection pool)


class _Payload(TypedDict, total=False):
    """What a request carries besides its method and path (`_json` passes it on to `_send`)."""

    query: dict[str, str] | None
    body: dict[str, Any] | None


class MlflowRegistry:
    """Reads and writes prompt aliases, versions and tags on one MLflow server.

    Use as `async with MlflowRegistry(config) as registry: ...`, or call `close()` when done.
    A registry belongs to the event loop that first uses it.
    """

    def __init__(self, config: RegistryConfig, *, cache: VersionCache | None = None) -> None:
        self.config = config
        self.cache = shared_cache if cache is None else cache
        # Caches (this one, the operator's prompt snapshots) are keyed by it: never cross credentials.
        self.identity = credential_identity(config)
        self.requests_sent = 0  # every HTTP request made, for tests and metrics
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._inflight: dict[CacheKey, asyncio.Task[PromptVersion]] = {}
        # At most MAX_CONNECTIONS requests at once; one waiting for a slot is not yet talking to
        # MLflow, so its deadline starts only when it has one (the timeout measures MLflow).
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._proxy: tuple[URL, aiohttp.BasicAuth | None] | None = None

    def __repr__(self) -> str:
        return f"MlflowRegistry({self.config!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for task in self._inflight.values():
            task.cancel()
        self._inflight.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- public API ------------------------------------------------------------------------

    async def check(self) -> ServerInfo:
        """Health, server version and credentials, in two requests: GET /version, then an
        authenticated API read (basic-auth servers answer /version only to known users; plain
        ones answer it to anyone, so the read is what proves the credentials)."""
        call = self._call("check the server")
        body = await self._send("GET", "/version", call, expect_json=False)
        version = parse_server_version(body, call)
        await self._json("GET", f"{API}/registered-models/search", call, query={"max_results": "1"})
        return ServerInfo(
            uri=self.config.tracking_uri,
            version=version,
            workspace=self.config.workspace,
            authenticated=self.config.auth_kind != "none",
        )

    async def get_prompt(self, name: str) -> PromptState:
        """The prompt with all its aliases and tags: one GET registered-models/get.
        Raises PromptNotFound, or NotAPrompt (a PromptNotFound) for a plain registered model."""
        call = self._call("get prompt", prompt=name)
        data = await self._json("GET", f"{API}/registered-models/get", call, query={"name": name})
        state = parse_prompt(data.get("registered_model"), call)
        if not state.is_prompt:
            raise not_a_prompt(call)
        return state

    async def get_version(self, name: str, version: int, *, use_cache: bool = True) -> PromptVersion:
        """One prompt version: from the cache, else one GET model-versions/get (which refreshes the
        cache). `use_cache=False` always asks the server (tags and commit message are editable).
        Concurrent misses for the same version share one request."""
        key = self._key(name, version)
        if use_cache:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
            task = self._inflight.get(key)
            if task is None:
                task = asyncio.ensure_future(self._fetch_version(name, version))
                self._inflight[key] = task
                task.add_done_callback(functools.partial(self._forget_inflight, key))
            # shield: one waiter being cancelled must not cancel the fetch the others wait on.
            return await asyncio.shield(task)
        return await self._fetch_version(name, version)

    async def get_version_by_alias(self, name: str, alias: str) -> PromptVersion:
        """The version an alias points at now: one GET registered-models/alias (never cached;
        the version read refreshes the version cache). Raises AliasNotFound, PromptNotFound."""
        call = self._call("get version by alias", prompt=name, alias=alias)
        data = await self._json(
            "GET", f"{API}/registered-models/alias", call, query={"name": name, "alias": alias}
        )
        result = parse_version(data.get("model_version"), call)
        self.cache.put(self._key(name, result.version), result)
        return result

    async def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point `alias` at `version`: one POST registered-models/alias. Last write wins.
        Raises VersionNotFound (also when the prompt is missing: MLflow does not tell them apart)
        and RegistryRejected for reserved alias names. It does not check that `name` is a prompt:
        `get_version` (cached) does."""
        call = self._call("set alias", prompt=name, version=version, alias=alias)
        await self._json(
            "POST",
            f"{API}/registered-models/alias",
            call,
            body={"name": name, "alias": alias, "version": str(version)},
        )

    async def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias: one DELETE registered-models/alias. A missing alias is not an error
        (MLflow answers 200); a missing prompt raises PromptNotFound."""
        call = self._call("delete alias", prompt=name, alias=alias)
        await self._json(
            "DELETE", f"{API}/registered-models/alias", call, body={"name": name, "alias": alias}
        )

    async def set_prompt_tag(self, name: str, key: str, value: str) -> None:
        """Set a tag on the prompt (registered model): one POST registered-models/set-tag."""
        call = self._call("set prompt tag", prompt=name)
        await self._json(
            "POST", f"{API}/registered-models/set-tag", call, body={"name": name, "key": key, "value": value}
        )

    async def delete_prompt_tag(self, name: str, key: str) -> None:
        """Delete a tag of the prompt: one DELETE registered-models/delete-tag."""
        call = self._call("delete prompt tag", prompt=name)
        await self._json(
            "DELETE", f"{API}/registered-models/delete-tag", call, body={"name": name, "key": key}
        )

    async def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Set a tag on one prompt version: one POST model-versions/set-tag. A cached copy gets the
        tag too (the operator tags a version on every move: dropping the copy instead would cost
        the next alias of the prompt a read); on failure it is dropped, as the outcome is unknown."""
        body = {"name": name, "version": str(version), "key": key, "value": value}
        await self._write_version_tag(
            "POST", "set-tag", "set version tag", name, version, body, lambda tags: {**tags, key: value}
        )

    async def delete_version_tag(self, name: str, version: int, key: str) -> None:
        """Delete a tag of one prompt version: one DELETE model-versions/delete-tag (the cached copy
        loses it too; on failure the copy is dropped)."""
        body = {"name": name, "version": str(version), "key": key}
        await self._write_version_tag(
            "DELETE",
            "delete-tag",
            "delete version tag",
            name,
            version,
            body,
            lambda tags: {k: v for k, v in tags.items() if k != key},
        )

    async def _write_version_tag(
        self,
        method: str,
        action: str,
        op: str,
        name: str,
        version: int,
        body: dict[str, Any],
        retag: Callable[[dict[str, str]], dict[str, str]],
    ) -> None:
        """One tag write on a version; then the cached copy's tags become `retag(old tags)`, or the
        copy is dropped when the write failed (whether MLflow applied it is unknown)."""
        call = self._call(op, prompt=name, version=version)
        cache_key = self._key(name, version)
        try:
            await self._json(method, f"{API}/model-versions/{action}", call, body=body)
        except BaseException:
            self.cache.discard(cache_key)
            raise
        self._retag(cache_key, retag(self._cached_tags(cache_key)))

    def _cached_tags(self, key: CacheKey) -> dict[str, str]:
        cached = self.cache.peek(key)
        return dict(cached.tags) if cached is not None else {}

    def _retag(self, key: CacheKey, tags: dict[str, str]) -> None:
        """Replace the tags of a cached version (no-op when it is not cached)."""
        cached = self.cache.peek(key)
        if cached is not None:
            self.cache.put(key, dataclasses.replace(cached, tags=tags))

    async def search_prompts(
        self, filter_string: str | None = None, *, limit: int = 10_000
    ) -> list[PromptState]:
        """Prompts matching an MLflow filter (e.g. "name LIKE 'invoice-%'"), up to `limit`:
        one GET registered-models/search per 1000 prompts."""
        call = self._call("search prompts")
        flt = _PROMPT_FILTER if not filter_string else f"{_PROMPT_FILTER} AND {filter_string}"
        found = await self._search(
            "registered-models/search", "registered_models", parse_prompt, call, flt, limit=limit
        )
        return found[:limit]

    async def list_versions(self, name: str) -> list[PromptVersion]:
        """Every version of a prompt, oldest first: one GET model-versions/search per 1000
        versions; fills the version cache. A missing prompt (or a plain model) gives []."""
        call = self._call("list versions", prompt=name)
        flt = f"name = '{_quote_filter(name)}' AND {_VERSION_FILTER_TAG}"
        versions = await self._search("model-versions/search", "model_versions", parse_version, call, flt)
        for v in versions:
            self.cache.put(self._key(name, v.version), v)
        return sorted(versions, key=lambda v: v.version)

    # ---- internals ---------------------------------------------------------------------------

    async def _search(
        self,
        path: str,
        items_key: str,
        parse: Callable[[Any, Call], _Item],
        call: Call,
        flt: str,
        *,
        limit: int | None = None,
    ) -> list[_Item]:
        """The items of one MLflow search, page by page: up to `limit`, or (None) all of them, when
        more than MAX_PAGES pages is an error rather than a silent cut."""
        found: list[_Item] = []
        token: str | None = None
        seen: set[str] = set()
        for _page in range(MAX_PAGES):
            size = _SEARCH_PAGE if limit is None else min(_SEARCH_PAGE, limit - len(found))
            if size <= 0:
                return found
            query = {"filter": flt, "max_results": str(size)}
            if token:
                query["page_token"] = token
            data = await self._json("GET", f"{API}/{path}", call, query=query)
            found.extend(parse(item, call) for item in data.get(items_key) or [])
            token = _next_token(data, seen, call)
            if token is None:
                return found
        if limit is not None:
            return found
        # Only list_versions asks for everything: a cut would silently lose versions.
        raise RegistryProtocolError(
            f"MLflow at {call.uri} kept paging {call.op}{call.subject()} past {MAX_PAGES * _SEARCH_PAGE} "
            "versions: refusing to read more"
        )

    async def _fetch_version(self, name: str, version: int) -> PromptVersion:
        call = self._call("get version", prompt=name, version=version)
        data = await self._json(
            "GET", f"{API}/model-versions/get", call, query={"name": name, "version": str(version)}
        )
        result = parse_version(data.get("model_version"), call)
        self.cache.put(self._key(name, version), result)
        return result

    def _forget_inflight(self, key: CacheKey, task: asyncio.Task[PromptVersion]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            # Every waiter may have been cancelled: mark the error as seen so asyncio does not
            # log "exception was never retrieved" for a failure the callers already got.
            task.exception()

    def _key(self, name: str, version: int) -> CacheKey:
        return (self.identity, name, int(version))

    def _call(
        self, op: str, *, prompt: str | None = None, version: int | None = None, alias: str | None = None
    ) -> Call:
        return Call(
            op=op,
            uri=self.config.tracking_uri,
            prompt=prompt,
            version=version,
            alias=alias,
            credentials=self.config.auth_kind != "none",
            workspace=self.config.workspace,
        )

    def _session_for_running_loop(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this MlflowRegistry is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._session is None:
            headers = {"Accept": "application/json", "User-Agent": "promptalias-registry"}
            if self.config.auth_kind == "basic":
                userpass = f"{self.config.username}:{self.config.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(userpass).decode("ascii")
            elif self.config.auth_kind == "bearer":
                headers["Authorization"] = f"Bearer {self.config.token}"
            if self.config.workspace:
                headers[WORKSPACE_HEADER] = self.config.workspace
            connector = aiohttp.TCPConnector(
                ssl=self.config.ssl_context() if self.config.is_https else True,
                limit=MAX_CONNECTIONS,
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=headers,
                # The deadline is applied per request in _send, after a slot is free.
                timeout=aiohttp.ClientTimeout(total=None),
                # Proxies come from HTTP(S)_PROXY/NO_PROXY, as MLflow's own (requests) client honours
                # them, read once here: aiohttp's trust_env reads them (and ~/.netrc) again in a
                # thread for every request, two thread hops on the path of each alias write.
                trust_env=False,
                json_serialize=json.dumps,
            )
            self._proxy = _env_proxy(self.config.tracking_uri)
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this MlflowRegistry is bound to another event loop; create one registry per loop"
            )
        return self._session

    async def _json(self, method: str, path: str, call: Call, **payload: Unpack[_Payload]) -> dict[str, Any]:
        raw = await self._send(method, path, call, expect_json=True, **payload)
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise RegistryProtocolError(
                f"MLflow at {call.uri} answered {call.op} with invalid JSON ({describe_body(raw)}): "
                "check that tracking_uri points at the MLflow server itself"
            ) from None
        if not isinstance(data, dict):
            raise RegistryProtocolError(
                f"MLflow at {call.uri} answered {call.op} with JSON that is not an object"
            )
        return data

    async def _send(
        self,
        method: str,
        path: str,
        call: Call,
        *,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        expect_json: bool,
    ) -> bytes:
        session = self._session_for_running_loop()
        url = self.config.tracking_uri + path
        if query:
            # Encode ourselves: yarl would leave '+' in filter strings, which servers read as a space.
            url += "?" + urlencode(query, quote_via=quote)
        started = time.perf_counter()
        try:
            async with self._slots:
                self.requests_sent += 1
                started = time.perf_counter()
                async with (
                    asyncio.timeout(self.config.timeout_s),
                    session.request(
                        method,
                        URL(url, encoded=True),
                        json=body,
                        allow_redirects=False,
                        proxy=self._proxy[0] if self._proxy else None,
                        proxy_auth=self._proxy[1] if self._proxy else None,
                    ) as response,
                ):
                    status = response.status
                    raw = await _read_bounded(response, call)
                    content_type = response.content_type
                    location = response.headers.get("Location", "")
                    retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            raise RegistryUnavailable(
                f"MLflow at {call.uri} did not answer {call.op}{call.subject()} within "
                f"{self.config.timeout_s:g} s: check that the server is up and reachable, "
                "or raise the timeout"
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise RegistryTLSError(
                f"TLS with MLflow at {call.uri} failed ({_tls_reason(exc)}): set the registry's CA "
                "bundle to the CA that signed the server's certificate, or fix the host name"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise RegistryUnavailable(
                f"cannot connect to MLflow at {call.uri} to {call.op} "
                f"({exc.os_error.strerror or exc.os_error}): "
                "check that the server is running and that the host and port are right"
            ) from exc
        except aiohttp.ClientError as exc:
            raise RegistryUnavailable(
                f"the connection to MLflow at {call.uri} failed during {call.op} ({type(exc).__name__}): "
                "the server may have restarted; the call will be retried"
            ) from exc
        finally:
            log.debug(
                "mlflow %s %s -> %.1f ms",
                method,
                path,
                (time.perf_counter() - started) * 1000,
            )
        if 300 <= status < 400:
            raise RegistryProtocolError(
                f"MLflow at {call.uri} redirected {call.op} (HTTP {status}) to "
                f"{URL(location).with_user(None).with_query(None)!s}: "
                "set tracking_uri to the final URL (scheme, host and path prefix)",
                status=status,
            )
        if status >= 300 or status < 200:
            raise error_from_response(call, status, raw, retry_after=retry_after)
        if expect_json and content_type not in ("application/json", ""):
            raise RegistryProtocolError(
                f"MLflow at {call.uri} answered {call.op} with {content_type}, not JSON: "
                "check that tracking_uri is the MLflow server (not a login page or proxy) "
                "and its path prefix",
                status=status,
            )
        return raw


async def _read_bounded(response: aiohttp.ClientResponse, call: Call) -> bytes:
    """The body, refusing answers over MAX_RESPONSE_BYTES (declared or actual) without reading on."""
    declared = response.content_length
    if declared is not None and declared > MAX_RESPONSE_BYTES:
        raise _too_large(call, declared)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _too_large(call, size)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(call: Call, size: int) -> RegistryProtocolError:
    return RegistryProtocolError(
        f"MLflow at {call.uri} answered {call.op}{call.subject()} with more than {MAX_RESPONSE_BYTES} bytes "
        f"({size}); refusing to read it: check that tracking_uri is the MLflow server"
    )


def _next_token(data: dict[str, Any], seen: set[str], call: Call) -> str | None:
    token = data.get("next_page_token") or None
    if token is None:
        return None
    token = str(token)
    if token in seen:
        raise RegistryProtocolError(f"MLflow at {call.uri} repeated a page token during {call.op}: stopping")
    seen.add(token)
    return token


def _tls_reason(exc: aiohttp.ClientSSLError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        reason = getattr(cert_error, "verify_message", None) or getattr(cert_error, "reason", None)
        return f"certificate verification failed: {reason or cert_error}"
    return getattr(exc.os_error, "reason", None) or type(exc).__name__


def _env_proxy(uri: str) -> tuple[URL, aiohttp.BasicAuth | None] | None:
    """The proxy HTTP(S)_PROXY / NO_PROXY give for `uri` (None: connect directly)."""
    try:
        return get_env_proxy_for_url(URL(uri))
    except LookupError:
        return None


def _quote_filter(value: str) -> str:
    """Escape a value for a single-quoted string in MLflow's filter syntax."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
