"""The MLflow side of the audit trail: a tag on the prompt version an alias was moved to.

MLflow keeps no history of alias moves (an alias is one row, last write wins). Every move the
operator makes is therefore also written as a tag on the version the alias now points at, so the
MLflow UI tells the same story as the resource's `status.history`:

    promptalias.io/moved.production = {"by": "<cluster>/billing/invoice-parser-production",
                                       "at": "2026-11-25T10:00:00Z", "replaced": 3}

One tag per alias and version: moving the same alias to the same version again overwrites it (the
full sequence lives in the CR's history). The projection drops every `promptalias.io/` tag, so these
never reach pods.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from promptalias.reconcile.timestamps import format_timestamp
from promptalias.vocabulary import MOVED_TAG_PREFIX

# MLflow refuses model-version tag values over 5000 characters; ours are far below, but a long
# cluster id or resource name must never make the write itself fail.
MAX_TAG_VALUE: Final = 5000


def moved_tag_key(alias: str) -> str:
    """The version tag that records the last move of `alias` onto that version."""
    return f"{MOVED_TAG_PREFIX}{alias}"


def audit_tag(alias: str, *, by: str, at: datetime, replaced: int | None) -> tuple[str, str]:
    """(key, value) of the tag to set on the version `alias` was just moved to.

    `by` names the writer as cluster/namespace/name (an `Owner`'s str, or
    cluster/namespace/promptexperiment/name for an experiment); `replaced` is the version the alias
    pointed at before (None: it did not exist). `at` must be timezone-aware.
    """
    if at.tzinfo is None:
        raise ValueError("audit_tag: 'at' must be timezone-aware")
    stamp = format_timestamp(at)
    value = json.dumps({"by": by, "at": stamp, "replaced": replaced}, separators=(",", ":"))
    if len(value) > MAX_TAG_VALUE:
        value = json.dumps({"by": by[:4000], "at": stamp, "replaced": replaced}, separators=(",", ":"))
    return moved_tag_key(alias), value


def parse_audit_tag(value: str | None) -> dict[str, object] | None:
    """The recorded move, or None when the tag is absent or unreadable."""
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def write_landed(tags: Mapping[str, str], alias: str, *, by: str, at: datetime) -> bool:
    """Whether the version carrying `tags` says `by` moved `alias` onto it at `at`.

    The operator writes this tag right after its `set_alias`, so it proves a pending move reached
    MLflow even when someone moved the alias elsewhere before the status was written (a crash in
    between). Compared to the second, as written.
    """
    record = parse_audit_tag(tags.get(moved_tag_key(alias)))
    if record is None or at.tzinfo is None:
        return False
    return record.get("by") == by and record.get("at") == format_timestamp(at)
