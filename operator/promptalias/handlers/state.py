"""What the operator knows between events: registries, namespaces, claims, bodies, MLflow clients.

Kept in kopf's `memo`, updated by raw watch events (`@kopf.on.event`) and by the answers to the
operator's own writes, read by the PromptAlias queue workers (handlers/alias_queue.py) and the
experiment daemons. Everything here lives on the operator's one event loop: no locks needed.
The PromptAlias lookups a pass makes go through `table` (reconcile/alias_table.py, indexed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from promptalias.api.registry import RegistrySpec
from promptalias.kube import Kube, KubeError, NotFound
from promptalias.reconcile.alias_table import AliasEntry, AliasTable, resource_version, slim_body
from promptalias.reconcile.ownership import Owner
from promptalias.reconcile.registry import KnownRegistry, RegistryKey
from promptalias.reconcile.workqueue import Priority, WorkQueue
from promptalias.registry import MlflowRegistry, PromptState, RegistryConfig
from promptalias.registry.config import secret_text

log = logging.getLogger(__name__)

SECRET_RECHECK_S = 30.0  # how long read credentials are trusted before the Secret is read again


class InvalidRegistryConfig(Exception):  # noqa: N818 - reads as a condition reason
    """The registry's Secrets or settings cannot be turned into a working client."""


@dataclass
class Worker:
    """The mailbox of one PromptExperiment's daemon: a poke wakes it at once."""

    uid: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    fresh: bool = True  # the next reconcile must read MLflow directly (spec changed)

    def poke(self, *, fresh: bool) -> None:
        self.fresh = self.fresh or fresh
        self.wake.set()


@dataclass
class Snapshot:
    state: PromptState | None  # None: the prompt does not exist
    fetched: float  # time.monotonic()


def snapshot_key(client: MlflowRegistry, prompt: str) -> tuple[str, str]:
    """Where a prompt read with `client` is kept: by credential identity, not by endpoint, so a
    read one registry's credentials were allowed is never served to another's (issue 11, tenancy)."""
    return (client.identity, prompt)


def store_snapshot(
    snapshots: dict[tuple[str, str], Snapshot], client: MlflowRegistry, prompt: str, state: PromptState | None
) -> bool:
    """Keep a fresh read of `prompt`; True when its aliases or tags moved since the last one we had
    (or there was none): the poller's and the webhook's signal to wake the prompt's workers."""
    key = snapshot_key(client, prompt)
    old = snapshots.get(key)
    snapshots[key] = Snapshot(state, time.monotonic())
    return old is None or _marks(old.state) != _marks(state)


def _marks(state: PromptState | None) -> tuple[dict[str, int], dict[str, str]] | None:
    return None if state is None else (state.aliases, state.tags)


@dataclass
class _CachedClient:
    fingerprint: tuple[object, ...]
    client: MlflowRegistry
    checked: float


class World:
    """The operator's shared, in-memory view of the cluster and MLflow."""

    def __init__(self, kube: Kube, me_cluster: str) -> None:
        self.kube = kube
        self.cluster = me_cluster
        self.registries: dict[RegistryKey, KnownRegistry] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.table = AliasTable(self.endpoint)  # the PromptAliases, indexed (reconcile/alias_table.py)
        # The newest body seen of each PromptAlias: from the watch or from our own write's answer.
        self.bodies: dict[str, Mapping[str, Any]] = {}
        self.queue = WorkQueue()
        self.queue_changed = asyncio.Event()
        self.snapshots: dict[tuple[str, str], Snapshot] = {}
        # Prompts the last drift search of each credential identity found (reconcile/poll.py).
        self.registry_sizes: dict[str, int] = {}
        self.projection_hashes: dict[str, str] = {}  # uid -> content hash last applied
        self._clients: dict[RegistryKey, _CachedClient] = {}
        self._poll_triggers: dict[str, asyncio.Event] = {}
        # (namespace, baseline PromptAlias name) -> experiment block for its projection
        self.experiments: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def aliases(self) -> Mapping[str, AliasEntry]:
        """Every PromptAlias this process knows, by uid (change it with `table.track` / `untrack`)."""
        return self.table.entries

    def experiment_projection(self, namespace: str, alias_name: str) -> dict[str, Any] | None:
        """The `experiment` block to project with a baseline PromptAlias (None: no experiment).

        Filled by the PromptExperiment controller: {"candidate": {"alias", "version", "template",
        "response_format"?, "model_config"?}, "weight": 0-100, "key": str}.
        """
        return self.experiments.get((namespace, alias_name))

    def poll_trigger(self, endpoint: str) -> asyncio.Event:
        """Set it to make the registry poller read its prompts now (e.g. from an MLflow webhook)."""
        return self._poll_triggers.setdefault(endpoint, asyncio.Event())

    # ---- identities and claims ------------------------------------------------------------------

    def owner(self, namespace: str, name: str) -> Owner:
        return Owner(self.cluster, namespace, name)

    def endpoint(self, key: RegistryKey) -> str:
        known = self.registries.get(key)
        return known.endpoint if known is not None else f"unresolved:{key}"

    # ---- the PromptAlias table ------------------------------------------------------------------

    def untrack(self, uid: str) -> None:
        """Forget a PromptAlias that is gone: its entry, its body and its place in the queue."""
        self.table.untrack(uid)
        self.bodies.pop(uid, None)
        self.queue.forget(uid)

    def remember(self, body: MutableMapping[str, Any]) -> None:
        """Keep `body` if it is at least as new as the one we have (by resourceVersion): a watch
        event may lag behind the answer to our own status write, and deciding on a stale status
        would record a move twice. `body` is slimmed in place either way (`slim_body`: it loses the
        managed fields a pass never reads; docs/operator.md, "At scale"), since kopf may hold it."""
        slim_body(body)
        meta = body.get("metadata", {})
        uid = str(meta.get("uid"))
        old = self.bodies.get(uid)
        if old is None or resource_version(meta) >= resource_version(old.get("metadata", {})):
            self.bodies[uid] = body

    # ---- the work queue -------------------------------------------------------------------------

    def enqueue(
        self, uid: str, *, priority: Priority, fresh: bool, delay: float = 0.0, since: float | None = None
    ) -> None:
        """Schedule a pass of PromptAlias `uid`; `fresh`: it must read MLflow anew (made after now)."""
        entry = self.aliases.get(uid)
        if entry is None:
            return
        now = time.monotonic()
        self.queue.add(
            uid,
            entry.prompt,
            now=now,
            delay=delay,
            priority=priority,
            fresh_after=(since if since is not None else now) if fresh else None,
        )
        self.queue_changed.set()

    def poke(self, uids: Iterable[str], *, fresh: bool) -> None:
        """Something around these PromptAliases changed: reconcile them soon."""
        for uid in uids:
            self.enqueue(uid, priority=Priority.CHANGED, fresh=fresh)

    # ---- MLflow clients -------------------------------------------------------------------------

    async def client(self, known: KnownRegistry) -> MlflowRegistry:
        """A client for the registry, rebuilt when its spec or Secrets change (never logged)."""
        cached = self._clients.get(known.key)
        now = time.monotonic()
        same_spec = cached is not None and cached.fingerprint[:2] == (known.uid, known.generation)
        if cached is not None and same_spec and now - cached.checked < SECRET_RECHECK_S:
            return cached.client
        config, secret_versions = await self._config(known)
        fingerprint = (known.uid, known.generation, *secret_versions)
        if cached is not None and cached.fingerprint == fingerprint:
            cached.checked = now
            return cached.client
        if cached is not None:
            await cached.client.close()
        client = MlflowRegistry(config)
        self._clients[known.key] = _CachedClient(fingerprint, client, now)
        return client

    async def _secret_value(self, namespace: str, name: str, key: str, what: str) -> tuple[str, bytes | None]:
        try:
            version, data = await self.kube.read_secret(namespace, name)
        except NotFound:
            raise InvalidRegistryConfig(f"{what}: Secret {namespace}/{name} does not exist") from None
        except KubeError as exc:
            raise InvalidRegistryConfig(f"{what}: cannot read Secret {namespace}/{name} ({exc})") from None
        return version, data.get(key)

    async def _config(self, known: KnownRegistry) -> tuple[RegistryConfig, list[str]]:
        spec: RegistrySpec = known.spec
        default_ns = known.key.namespace
        versions: list[str] = []
        token = username = password = ca_data = None
        if spec.auth is not None:
            ref = spec.auth.secret_ref
            namespace = ref.namespace or default_ns or ""
            try:
                version, data = await self.kube.read_secret(namespace, ref.name)
            except NotFound:
                raise InvalidRegistryConfig(f"auth Secret {namespace}/{ref.name} does not exist") from None
            except KubeError as exc:
                raise InvalidRegistryConfig(
                    f"cannot read auth Secret {namespace}/{ref.name} ({exc})"
                ) from None
            versions.append(version)
            where = f"auth Secret {namespace}/{ref.name} key"
            if ref.token_key in data:
                token = _text(data[ref.token_key], f"{where} {ref.token_key!r}").strip()
            elif ref.username_key in data and ref.password_key in data:
                username = _text(data[ref.username_key], f"{where} {ref.username_key!r}").strip()
                password = _text(data[ref.password_key], f"{where} {ref.password_key!r}").strip()
            else:
                raise InvalidRegistryConfig(
                    f"auth Secret {namespace}/{ref.name} has neither key {ref.token_key!r} nor both "
                    f"{ref.username_key!r} and {ref.password_key!r}"
                )
        if spec.tls is not None and spec.tls.ca_secret_ref is not None:
            ca_ref = spec.tls.ca_secret_ref
            namespace = ca_ref.namespace or default_ns or ""
            version, value = await self._secret_value(namespace, ca_ref.name, ca_ref.key, "tls.caSecretRef")
            if value is None:
                raise InvalidRegistryConfig(f"CA Secret {namespace}/{ca_ref.name} has no key {ca_ref.key!r}")
            versions.append(version)
            ca_data = _text(value, f"CA Secret {namespace}/{ca_ref.name} key {ca_ref.key!r}")
        from promptalias.api.duration import parse_duration

        try:
            config = RegistryConfig(
                tracking_uri=spec.tracking_uri,
                token=token,
                username=username,
                password=password,
                ca_data=ca_data,
                insecure_skip_verify=bool(spec.tls and spec.tls.insecure_skip_verify),
                timeout_s=parse_duration(spec.timeout),
                workspace=spec.workspace,
            )
        except ValueError as exc:
            raise InvalidRegistryConfig(f"registry settings are unusable: {exc}") from None
        return config, versions

    async def close(self) -> None:
        for cached in self._clients.values():
            await cached.client.close()
        self._clients.clear()


def _text(value: bytes, what: str) -> str:
    """A Secret value as text, or InvalidRegistryConfig (Ready=False) without a byte of it."""
    try:
        return secret_text(value, what)
    except ValueError as exc:
        raise InvalidRegistryConfig(str(exc)) from None
