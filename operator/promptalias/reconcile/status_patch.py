"""How a new status becomes a write: whether it is worth one, and the merge patch that makes it (pure).

Statuses are written as JSON merge patches (RFC 7386) against what the pass read. A merge patch
merges objects, so a field that went away must be sent as null, at any depth: a new pendingMove
must null the old one's extra fields, a new analysis the old one's sampleRatio.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptalias.reconcile.timestamps import parse_timestamp

LAST_SYNC: str = "lastSyncTime"


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch from `old` to `new`: `new`, plus null for each field `old` has and `new` lacks."""
    patch: dict[str, Any] = dict(new)
    for key, value in old.items():
        if key not in new:
            patch[key] = None
        elif isinstance(value, Mapping) and isinstance(new[key], Mapping):
            patch[key] = merge_patch(value, new[key])
    return patch


def worth_writing(old: Mapping[str, Any], new: Mapping[str, Any], refresh_s: float) -> bool:
    """Write status when anything but lastSyncTime changed, or lastSyncTime is older than a refresh
    (so a settled PromptAlias costs one status write per refreshInterval, not one per pass)."""

    def strip(status: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in status.items() if k != LAST_SYNC}

    if strip(old) != strip(new):
        return True
    old_sync, new_sync = old.get(LAST_SYNC), new.get(LAST_SYNC)
    if old_sync == new_sync:
        return False
    old_time, new_time = parse_timestamp(old_sync), parse_timestamp(new_sync)
    if old_time is None or new_time is None:
        return True
    elapsed = (new_time - old_time).total_seconds()
    return elapsed >= max(refresh_s, 1.0)


__all__ = ["merge_patch", "worth_writing"]
