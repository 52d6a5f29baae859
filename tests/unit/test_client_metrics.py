"""Per-version request metrics, with the real prometheus_client (arms compared in Grafana)."""

from __future__ import annotations

import prometheus_client

from promptalias.client import Prompt, observe


def test_requests_are_counted_and_timed_by_version_and_arm() -> None:
    prompt = Prompt("invoice-parser", 3, "t {{x}}", alias="production", arm="candidate")
    labels = {"name": "invoice-parser", "alias": "production", "version": "3", "arm": "candidate"}
    registry = prometheus_client.REGISTRY
    errors = {**labels, "outcome": "error"}
    before = registry.get_sample_value("promptalias_client_requests_total", errors) or 0.0
    count_before = (
        registry.get_sample_value("promptalias_client_request_duration_seconds_count", labels) or 0.0
    )
    observe(prompt, 0.25, outcome="error")
    observe(prompt, 0.5)
    assert registry.get_sample_value("promptalias_client_requests_total", errors) == before + 1
    ok = registry.get_sample_value("promptalias_client_requests_total", {**labels, "outcome": "ok"})
    assert ok is not None
    assert ok >= 1
    count = registry.get_sample_value("promptalias_client_request_duration_seconds_count", labels)
    assert count == count_before + 2
