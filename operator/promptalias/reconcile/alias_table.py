"""The PromptAliases this process knows, indexed the way a pass looks them up (pure, no I/O).

The operator serves thousands of PromptAliases (docs/operator.md, Scale): a pass asks for the
aliases of one prompt, or the uid of one namespace/name, never for a scan of every alias. The
table keeps both indexes consistent with the entries; `World` (handlers/state.py) holds one and
feeds it from the watch (`alias_entry` of each event's body).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from promptalias.api.promptalias import PromptAlias
from promptalias.reconcile.managed_fields import owners_of
from promptalias.reconcile.ownership import Claim
from promptalias.reconcile.registry import RegistryKey, registry_key
from promptalias.reconcile.timestamps import parse_timestamp


@dataclass
class AliasEntry:
    """What the claim table and pokes need to know about one PromptAlias."""

    uid: str
    namespace: str
    name: str
    registry: RegistryKey
    prompt: str
    alias: str
    created: datetime
    writes: bool
    deleting: bool


def alias_entry(body: Mapping[str, Any]) -> AliasEntry | None:
    """The table entry of a PromptAlias body (None when its spec does not parse)."""
    meta = body.get("metadata", {})
    spec = body.get("spec", {})
    try:
        ref = PromptAlias.from_body(body).spec.registry_ref
    except ValueError:
        return None
    return AliasEntry(
        uid=str(meta.get("uid")),
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        registry=registry_key(ref, str(meta.get("namespace"))),
        prompt=str(spec.get("prompt")),
        alias=str(spec.get("alias")),
        created=parse_timestamp(meta.get("creationTimestamp")) or datetime.now(UTC),
        writes=spec.get("version") is not None,
        deleting=meta.get("deletionTimestamp") is not None,
    )


class AliasTable:
    """Entries by uid, with an index by prompt and one by (namespace, name).

    `endpoint_of` names the MLflow a registry object points at (claims and endpoint filters compare
    endpoints: two registry objects for one MLflow contend for the same aliases).
    """

    def __init__(self, endpoint_of: Callable[[RegistryKey], str]) -> None:
        self._endpoint_of = endpoint_of
        self._entries: dict[str, AliasEntry] = {}
        self._by_prompt: dict[str, set[str]] = {}
        self._by_name: dict[tuple[str, str], str] = {}

    @property
    def entries(self) -> Mapping[str, AliasEntry]:
        """Every entry by uid (read-only: `track`/`untrack` keep the indexes)."""
        return self._entries

    def track(self, entry: AliasEntry) -> None:
        """Add `entry`, or replace the entry of its uid (its prompt or name may have changed)."""
        self.untrack(entry.uid)
        self._entries[entry.uid] = entry
        self._by_prompt.setdefault(entry.prompt, set()).add(entry.uid)
        self._by_name[(entry.namespace, entry.name)] = entry.uid

    def untrack(self, uid: str) -> None:
        entry = self._entries.pop(uid, None)
        if entry is None:
            return
        same = self._by_prompt.get(entry.prompt)
        if same is not None:
            same.discard(uid)
            if not same:
                del self._by_prompt[entry.prompt]
        # A PromptAlias deleted and created again under its name may be tracked before the old
        # one is untracked: the name then belongs to the new uid.
        if self._by_name.get((entry.namespace, entry.name)) == uid:
            del self._by_name[(entry.namespace, entry.name)]

    def uid_of(self, namespace: str, name: str) -> str | None:
        return self._by_name.get((namespace, name))

    def of_prompt(self, prompt: str) -> Iterable[AliasEntry]:
        return (self._entries[uid] for uid in self._by_prompt.get(prompt, ()))

    def claims(self, *, prompt: str, alias: str) -> list[Claim]:
        """The claims on `alias` of `prompt` (on any endpoint: callers pass the key to `winner`)."""
        return [
            Claim(
                endpoint=self._endpoint_of(entry.registry),
                prompt=entry.prompt,
                alias=entry.alias,
                namespace=entry.namespace,
                name=entry.name,
                uid=entry.uid,
                created=entry.created,
                writes=entry.writes and not entry.deleting,
            )
            for entry in self.of_prompt(prompt)
            if entry.alias == alias
        ]

    def uids_where(
        self,
        *,
        registry: RegistryKey | None = None,
        endpoint: str | None = None,
        prompt: str | None = None,
        alias: str | None = None,
        namespace: str | None = None,
    ) -> list[str]:
        """The uids of the entries that match every filter given."""
        found = []
        candidates = self.of_prompt(prompt) if prompt is not None else self._entries.values()
        for entry in candidates:
            if registry is not None and entry.registry != registry:
                continue
            if endpoint is not None and self._endpoint_of(entry.registry) != endpoint:
                continue
            if prompt is not None and entry.prompt != prompt:
                continue
            if alias is not None and entry.alias != alias:
                continue
            if namespace is not None and entry.namespace != namespace:
                continue
            found.append(entry.uid)
        return found


def resource_version(meta: Mapping[str, Any]) -> int:
    """resourceVersion as a number (etcd's revision); -1 when absent or not a number."""
    try:
        return int(str(meta.get("resourceVersion")))
    except ValueError:
        return -1


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim_body(body: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop, in place, what a pass never reads from a PromptAlias body it keeps between events; the
    same body, returned.

    Dropped: every managedFields entry but the owners of spec.version (the history's actor,
    `version_actor`), each cut down to that one field, and kubectl's last-applied annotation (a second
    copy of the manifest). A pass reads the same values from what is left. In place, because kopf
    keeps each watched object's latest body for its daemon and hands the very same dict to the event
    handler (handlers/aliases.py): slimming it there slims kopf's copy too, and the World then holds
    that one dict instead of a second. kopf reads neither (its diff base ignores the annotation). At
    10,000 resources the managed fields were the largest part of each body: the status writer's
    entry alone lists every condition and history field.
    """
    meta = body.get("metadata")
    if not isinstance(meta, MutableMapping):
        return body
    if "managedFields" in meta:
        owners = owners_of(meta["managedFields"], "spec", "version")
        if owners:
            meta["managedFields"] = owners
        else:
            del meta["managedFields"]
    annotations = meta.get("annotations")
    if isinstance(annotations, MutableMapping) and LAST_APPLIED in annotations:
        del annotations[LAST_APPLIED]
    return body


__all__ = ["LAST_APPLIED", "AliasEntry", "AliasTable", "alias_entry", "resource_version", "slim_body"]
