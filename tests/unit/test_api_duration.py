"""Durations: Go-style strings in the CRDs, seconds in Python."""

from __future__ import annotations

import re

import pytest

from promptalias.api import format_duration, parse_duration
from promptalias.api.duration import DURATION_PATTERN, parse_duration_nanos


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("5s", 5.0),
        ("60s", 60.0),
        ("1m30s", 90.0),
        ("1h0m0s", 3600.0),
        ("1h", 3600.0),
        ("2h45m", 9900.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("1s500ms", 1.5),
        ("10us", 0.00001),
        ("7ns", 0.000000007),
        ("90m", 5400.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "5",
        "-5s",
        "+5s",
        "5 s",
        "1 minute",
        "5sec",
        "1d",
        "1.s",
        ".5s",
        "5S",
        "1µs",
        "s",
        "1h 30m",
        " 5s",
    ],
)
def test_parse_duration_refuses_what_the_schema_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
    assert re.search(DURATION_PATTERN, text) is None


def test_parse_is_exact_in_nanoseconds() -> None:
    assert parse_duration_nanos("1.000000001s") == 1_000_000_001
    assert parse_duration_nanos("0.1s") == 100_000_000
    assert parse_duration_nanos("1h1m1s1ms1us1ns") == 3_661_001_001_001


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (5, "5s"),
        (60, "1m0s"),
        (90, "1m30s"),
        (3600, "1h0m0s"),
        (5400.5, "1h30m0.5s"),
        (1.5, "1.5s"),
        (0.25, "250ms"),
        (0.0015, "1.5ms"),
        (0.000002, "2us"),
    ],
)
def test_format_duration_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, 0.001, 1, 1.5, 59, 61, 3599.25, 86400, 123456.789])
def test_format_then_parse_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_format_refuses_negative() -> None:
    with pytest.raises(ValueError, match="never negative"):
        format_duration(-1)
