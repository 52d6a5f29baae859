"""Who last set a field, read from `metadata.managedFields` (pure, stdlib only).

The apiserver records, per field manager, the fields it last wrote (fieldsV1: nested `f:<key>`
maps). The newest entry that holds a field names its actor: `kubectl-patch`, `argocd-controller`,
`kubectl-promptalias`. The audit trail uses it for the ACTOR of a history entry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any


def _owners(
    managed_fields: Sequence[Mapping[str, Any]] | None, path: tuple[str, ...]
) -> Iterator[Mapping[str, Any]]:
    """The entries whose fieldsV1 hold the field at `path`."""
    for entry in managed_fields or ():
        node: Any = entry.get("fieldsV1") or {}
        for key in path:
            node = node.get(f"f:{key}") if isinstance(node, Mapping) else None
        if node is not None:
            yield entry


def last_manager(managed_fields: Sequence[Mapping[str, Any]] | None, *path: str) -> str | None:
    """The field manager of the newest entry that owns the field at `path` (plain keys, e.g.
    "spec", "version"), or None when no entry does."""
    best: tuple[str, str] | None = None
    for entry in _owners(managed_fields, path):
        stamp = str(entry.get("time") or "")
        manager = str(entry.get("manager") or "unknown")
        if best is None or stamp >= best[0]:
            best = (stamp, manager)
    return best[1] if best else None


def version_actor(managed_fields: Sequence[Mapping[str, Any]] | None) -> str | None:
    """Who last set spec.version of a PromptAlias."""
    return last_manager(managed_fields, "spec", "version")


def annotation_actor(managed_fields: Sequence[Mapping[str, Any]] | None, key: str) -> str | None:
    """Who last set annotation `key` (e.g. promptalias.io/promote)."""
    return last_manager(managed_fields, "metadata", "annotations", key)


def owners_of(managed_fields: Sequence[Mapping[str, Any]] | None, *path: str) -> list[dict[str, Any]]:
    """Only what `last_manager(…, *path)` reads: the entries that own the field at `path`, each cut
    down to its manager, time and that one field. A body kept in memory for thousands of resources
    holds this instead of every manager's whole field set (the status writer's alone lists each
    condition and history field), and `last_manager` gives the same answer on it."""
    kept: list[dict[str, Any]] = []
    for entry in _owners(managed_fields, path):
        owned: dict[str, Any] = {}
        for key in reversed(path):
            owned = {f"f:{key}": owned}
        kept.append({"manager": entry.get("manager"), "time": entry.get("time"), "fieldsV1": owned})
    return kept
