"""A small client of the Prometheus HTTP API: instant queries that return one number.

Bounded: answers over 1 MiB are refused, every query has a timeout, nothing is retried here (the
analysis holds and tries again at the next interval). Errors say whether the query is wrong
(`PrometheusQueryError`: fix the spec) or the server is unreachable (`PrometheusUnavailableError`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import aiohttp

MAX_RESPONSE_BYTES: Final = 1 << 20
PLACEHOLDERS: Final = ("arm", "version", "prompt", "alias", "window")


class PrometheusError(Exception):
    """A query could not be answered."""

    permanent = False


class PrometheusUnavailableError(PrometheusError):
    """The server did not answer (down, timeout, 5xx): retried at the next interval."""


class PrometheusQueryError(PrometheusError):
    """The query is wrong (refused by Prometheus, or not one number): fix the spec."""

    permanent = True


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace {{arm}}, {{version}}, {{prompt}}, {{alias}} and {{window}} (spaces inside the braces
    allowed). Values are label values from our own objects; quotes are escaped for PromQL strings."""
    out = template
    for key in PLACEHOLDERS:
        value = values.get(key, "")
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        for form in ("{{" + key + "}}", "{{ " + key + " }}"):
            out = out.replace(form, escaped)
    return out


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def instant_query(
    session: aiohttp.ClientSession,
    address: str,
    query: str,
    *,
    timeout_s: float,
    at: datetime | None = None,
) -> float | None:
    """The value of `query` (one sample or a scalar); None when the result is empty (no series)."""
    url = address.rstrip("/") + "/api/v1/query"
    params = {"query": query}
    if at is not None:
        params["time"] = f"{at.timestamp():.3f}"
    try:
        async with session.post(
            url,
            data=params,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as response:
            raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
            status = response.status
    except TimeoutError:
        raise PrometheusUnavailableError(
            f"Prometheus at {address} did not answer within {timeout_s:g}s; check the server or raise "
            "prometheus.timeout"
        ) from None
    except aiohttp.ClientConnectorError as exc:
        raise PrometheusUnavailableError(
            f"cannot connect to Prometheus at {address} ({exc.os_error.strerror or exc.os_error}); check "
            "that it runs and that prometheus.address is right"
        ) from None
    except aiohttp.ClientError as exc:
        raise PrometheusUnavailableError(
            f"the connection to Prometheus at {address} failed ({type(exc).__name__})"
        ) from None
    if len(raw) > MAX_RESPONSE_BYTES:
        raise PrometheusQueryError(
            f"Prometheus answered more than {MAX_RESPONSE_BYTES} bytes for {_shorten(query)!r}: the query "
            "must return one number per arm (wrap it in sum(...))"
        )
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        kind = PrometheusUnavailableError if status >= 500 or status == 429 else PrometheusQueryError
        raise kind(
            f"Prometheus at {address} answered HTTP {status} without a JSON body: check that "
            "prometheus.address points at the Prometheus HTTP API"
        )
    if body.get("status") != "success":
        error_type = str(body.get("errorType") or "error")
        message = _shorten(str(body.get("error") or ""))
        if status >= 500 and error_type not in ("bad_data", "execution"):
            raise PrometheusUnavailableError(f"Prometheus at {address} failed ({error_type}: {message})")
        raise PrometheusQueryError(
            f"Prometheus refused the query {_shorten(query)!r}: {error_type}: {message}"
        )
    return _one_number(body.get("data"), query)


def _one_number(data: Any, query: str) -> float | None:
    if not isinstance(data, dict):
        raise PrometheusQueryError(f"Prometheus returned no data object for {_shorten(query)!r}")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _number(result[1], query)
    if kind == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusQueryError(
                f"the query {_shorten(query)!r} returned {len(result)} series; it must return one number "
                "per arm (wrap it in sum(...) and filter by {{version}} or {{arm}})"
            )
        sample = result[0].get("value") if isinstance(result[0], dict) else None
        if isinstance(sample, list) and len(sample) == 2:
            return _number(sample[1], query)
    raise PrometheusQueryError(
        f"the query {_shorten(query)!r} returned a {kind}; use an instant vector or scalar expression"
    )


def _number(text: Any, query: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise PrometheusQueryError(f"the query {_shorten(query)!r} returned {text!r}, not a number") from None
    return value if math.isfinite(value) else None
