"""Durations written like Go's `time.Duration` strings, as External Secrets and Flux do.

"5s", "1m30s", "1h0m0s", "250ms", "1.5h", "0s". Units: h, m, s, ms, us, ns. A bare "0", signs and
the micro sign are not accepted, so every value the schema lets through is one Go's
`time.ParseDuration` (and CEL's `duration()`) reads the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from typing import Annotated, Final

from pydantic import Field

from promptalias.api.cel import Rule

DURATION_PATTERN: Final = r"^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$"
DURATION_MAX_LENGTH: Final = 32

_COMPONENT: Final = re.compile(r"([0-9]+(?:[.][0-9]+)?)(ns|us|ms|s|m|h)")
_FULL: Final = re.compile(DURATION_PATTERN)
_NANOS_PER_UNIT: Final = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}

Duration = Annotated[str, Field(max_length=DURATION_MAX_LENGTH, pattern=DURATION_PATTERN)]
"""A duration string such as "5s", "1m30s" or "1h0m0s" ("0s" is zero)."""


def parse_duration_nanos(text: str) -> int:
    """Parse a duration string into whole nanoseconds (fractions truncated, like Go)."""
    if not isinstance(text, str) or _FULL.fullmatch(text) is None:
        raise ValueError(
            f"invalid duration {text!r}: write it like 5s, 1m30s, 1h0m0s or 250ms (units h, m, s, ms, us, ns)"
        )
    total = Fraction(0)
    for number, unit in _COMPONENT.findall(text):
        total += Fraction(number) * _NANOS_PER_UNIT[unit]
    return int(total)


def parse_duration(text: str) -> float:
    """Parse a duration string into seconds: parse_duration("1m30s") == 90.0."""
    return parse_duration_nanos(text) / 1_000_000_000


def format_duration(seconds: float) -> str:
    """Format seconds the way Go prints a time.Duration: 90 -> "1m30s", 3600 -> "1h0m0s", 0.25 -> "250ms"."""
    if seconds < 0:
        raise ValueError(f"durations are never negative here, got {seconds!r}")
    nanos = round(Fraction(seconds) * 1_000_000_000)
    if nanos == 0:
        return "0s"
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("us", 1_000), ("ns", 1)):
            if nanos >= size:
                return _decimal(nanos, size) + unit
    hours, rest = divmod(nanos, _NANOS_PER_UNIT["h"])
    minutes, rest = divmod(rest, _NANOS_PER_UNIT["m"])
    text = _decimal(rest, 1_000_000_000) + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _decimal(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")


def duration_rule(condition: str, check: Callable[[float], bool], message: str) -> Rule:
    """A CEL rule on a Duration field, e.g. duration_rule("duration(self) > duration('0s')", ...).

    The rule only runs on well-formed values (the pattern reports the others), so CEL's `duration()`
    never fails at evaluation time; `check` receives the value in seconds.
    """

    def twin(value: object) -> bool:
        return not isinstance(value, str) or _FULL.fullmatch(value) is None or check(parse_duration(value))

    return Rule(rule=f"!self.matches('{DURATION_PATTERN}') || ({condition})", message=message, check=twin)
