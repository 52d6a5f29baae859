"""Feedback on prompt versions, read from the traces MLflow stores (MLflow 3.17 REST API).

A trace names the prompt versions it used (the `mlflow.linkedPrompts` tag, written by
mlflow.genai.load_prompt and by promptalias.client); MLflow links them in its entity-association
table, which the v3 trace search filters with `prompt = "name/version"`. Each trace info carries its
assessments; feedback logged with `mlflow.log_feedback(trace_id, name, value)` appears as
`{"assessment_name": name, "feedback": {"value": ...}, "valid": true}` (an overridden assessment has
`valid: false`). One search is at most 500 traces (the server's cap); we read at most `max_traces`
per arm and look, newest first, and say so when the window held more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from promptalias.registry.client import MlflowRegistry
from promptalias.registry.errors import RegistryError, RegistryNotFound, RegistryProtocolError

SEARCH_PAGE: Final = 500
DEFAULT_MAX_TRACES: Final = 20_000
_POSITIVE_WORDS: Final = frozenset({"true", "yes", "pass", "passed", "positive", "good", "up", "correct"})


@dataclass(frozen=True)
class Feedback:
    """One arm's traces and feedback values over a window."""

    traces: int
    """Traces linked to the prompt version (the arm's exposures)."""
    values: list[float]
    """One value per valid assessment of the requested name."""
    truncated: bool = False
    """More traces than max_traces: only the newest were read."""


def feedback_value(raw: Any, *, rate: bool) -> float | None:
    """A feedback value as a number: for a Rate 1.0 (positive) or 0.0; for a Mean the number
    (true/false as 1/0); None when it is neither (e.g. free text for a Mean)."""
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            return None
        return (1.0 if raw > 0 else 0.0) if rate else float(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        try:
            number = float(text)
        except ValueError:
            return (1.0 if text in _POSITIVE_WORDS else 0.0) if rate else None
        return feedback_value(number, rate=rate)
    return None


async def experiment_id(registry: MlflowRegistry, name: str) -> str:
    """The id of the MLflow experiment `name` (where the app logs its traces)."""
    call = registry._call("get experiment")  # registry/ owns the REST client: its private call helpers
    try:
        data = await registry._json(
            "GET", f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={quote(name)}", call
        )
    except RegistryError as exc:
        if not isinstance(exc, RegistryNotFound) and exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise RegistryNotFound(
            f"MLflow at {registry.config.tracking_uri} has no experiment {name!r} (yet): no traces; if "
            "the app logs elsewhere, set mlflowFeedback.experiment to its mlflow.set_experiment name"
        ) from None
    found = (data.get("experiment") or {}).get("experiment_id")
    if not found:
        raise RegistryProtocolError(f"MLflow answered get-by-name for {name!r} without an experiment id")
    return str(found)


async def version_feedback(
    registry: MlflowRegistry,
    *,
    experiment: str,
    prompt: str,
    version: int,
    name: str,
    rate: bool,
    since: datetime,
    max_traces: int = DEFAULT_MAX_TRACES,
) -> Feedback:
    """Traces of `prompt` version `version` since `since` and their `name` feedback values."""
    since_ms = int(since.timestamp() * 1000)
    escaped = prompt.replace("\\", "\\\\").replace('"', '\\"')
    body: dict[str, Any] = {
        "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment}}],
        "filter": f'prompt = "{escaped}/{version}" AND timestamp_ms >= {since_ms}',
        "max_results": SEARCH_PAGE,
        "order_by": ["timestamp_ms DESC"],
    }
    call = registry._call("search traces", prompt=prompt, version=version)
    traces = 0
    values: list[float] = []
    while True:
        data = await registry._json("POST", "/api/3.0/mlflow/traces/search", call, body=body)
        page = data.get("traces") or []
        if not isinstance(page, list):
            raise RegistryProtocolError("MLflow answered the trace search without a list of traces")
        for trace in page:
            traces += 1
            for assessment in (trace.get("assessments") or []) if isinstance(trace, dict) else []:
                if not isinstance(assessment, dict) or assessment.get("assessment_name") != name:
                    continue
                if assessment.get("valid") is False or "feedback" not in assessment:
                    continue
                feedback = assessment.get("feedback") or {}
                if feedback.get("error"):
                    continue
                value = feedback_value(feedback.get("value"), rate=rate)
                if value is not None:
                    values.append(value)
        token = data.get("next_page_token")
        if not token or not page:
            return Feedback(traces, values)
        if traces >= max_traces:
            return Feedback(traces, values, truncated=True)
        body["page_token"] = token


__all__ = ["DEFAULT_MAX_TRACES", "Feedback", "experiment_id", "feedback_value", "version_feedback"]
