"""RFC 3339 timestamps as the apiserver writes them ("2026-11-25T13:31:36Z"): one parser, one writer.

Pure and stdlib only, used by the operator (creation and deletion times, lastSyncTime) and the CLI
(ages, step timers, Events) alike.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_timestamp(value: object) -> datetime | None:
    """An aware datetime from an RFC 3339 string (…Z or an offset) or a datetime, else None.

    Naive values are taken as UTC (the apiserver writes UTC); an empty, malformed or non-string
    value gives None, so a caller decides what a missing time means instead of catching errors.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    """`value` in UTC, whole seconds, with a Z: the form every status time of ours is written in."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
