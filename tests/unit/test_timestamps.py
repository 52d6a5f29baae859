"""One time parser and writer (reconcile/timestamps.py) for the operator and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from promptalias.reconcile.timestamps import format_timestamp, parse_timestamp

T = datetime(2026, 11, 25, 13, 31, 36, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-25T13:31:36Z", T),
        ("2026-11-25T13:31:36.250000Z", T + timedelta(milliseconds=250)),
        ("2026-11-25T14:31:36+01:00", T),
        ("2026-11-25T13:31:36", T),  # naive: the apiserver writes UTC
        (T, T),
        (T.replace(tzinfo=None), T),
        ("", None),
        (None, None),
        ("yesterday", None),
        (1764077496, None),
    ],
)
def test_parse_timestamp(value: object, expected: datetime | None) -> None:
    assert parse_timestamp(value) == expected


def test_format_timestamp_is_utc_seconds_with_z() -> None:
    assert format_timestamp(T + timedelta(microseconds=999)) == "2026-11-25T13:31:36Z"
    assert format_timestamp(T.astimezone(timezone(timedelta(hours=-5)))) == "2026-11-25T13:31:36Z"
    assert parse_timestamp(format_timestamp(T)) == T
