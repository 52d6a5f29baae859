"""spec.analysis with a real Prometheus (Debian's package, started here on 127.0.0.1) scraping the
traffic generator's /metrics (promptalias.client.observe), beside MLflow feedback.

A worse candidate is aborted by a Prometheus guard; with Prometheus stopped the experiment holds
(even with clearly better feedback) and resumes once it is back. Waits are on status fields.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from analysis_kit import (
    analysis_status,
    condition,
    exp,
    feedback_metric,
    pa,
    send_traffic,
    setup,
    traffic_module,
    wait_exp,
)
from kit import wait_for
from promptalias.testbed import Testbed
from promptalias.testbed.ports import free_port
from promptalias.testbed.prometheus import PrometheusServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
]  # traffic + several looks, on a loaded machine

_APP_METRICS: dict[str, str] = {}


@pytest.fixture(scope="module")
def app_metrics() -> str:
    """This process serves promptalias.client's metrics on /metrics (the traffic runs here)."""
    if "target" not in _APP_METRICS:
        import prometheus_client

        port = free_port()
        prometheus_client.start_http_server(port, addr="127.0.0.1")
        _APP_METRICS["target"] = f"127.0.0.1:{port}"
    return _APP_METRICS["target"]


@pytest.fixture(scope="module")
def prometheus(testbed: Testbed, app_metrics: str) -> Iterator[PrometheusServer]:
    server = PrometheusServer(testbed.run_dir / f"prometheus-{uuid.uuid4().hex[:6]}", targets=[app_metrics])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def errors_guard(address: str) -> str:
    selector = 'name="{{prompt}}",version="{{version}}"'
    return (
        "      - name: errors\n"
        "        role: Guard\n"
        "        direction: Lower\n"
        "        threshold: 0.05\n"
        "        thresholdType: Absolute\n"
        "        prometheus:\n"
        f"          address: {address}\n"
        "          timeout: 2s\n"
        f"          count: 'sum(promptalias_client_requests_total{{{selector}}})'\n"
        f"          value: 'sum(promptalias_client_requests_total{{{selector},outcome=\"error\"}})'"
    )


def test_prometheus_guard_aborts_a_worse_candidate(
    testbed: Testbed,
    namespace: str,
    registry: str,
    prompt_name: str,
    mlflow_client: Any,
    prometheus: PrometheusServer,
) -> None:
    behaviour = traffic_module().Behaviour
    experiment = f"traffic-{uuid.uuid4().hex[:8]}"
    metrics = f"{feedback_metric(experiment)}\n{errors_guard(prometheus.uri)}"
    setup(testbed, namespace, prompt_name, f"    interval: 1s\n    minSamples: 40\n    metrics:\n{metrics}")
    send_traffic(
        testbed,
        namespace,
        prompt_name,
        experiment,
        {3: behaviour(errors=0.01, thumbs=0.5), 4: behaviour(errors=0.4, thumbs=0.5)},
        users=240,
    )
    done = wait_exp(testbed, namespace, lambda obj: obj["status"].get("phase") == "Aborted", 240, "an abort")
    assert pa(testbed, namespace).get("resolvedVersion") == 3
    status = analysis_status(done)
    assert status["reason"].startswith("guard breached: errors")
    errors = next(m for m in status["metrics"] if m["name"] == "errors")
    assert errors["verdict"] == "Breached"
    assert errors["lower"] > 0.05  # the whole confidence sequence lies beyond the threshold


def test_prometheus_down_holds_then_resumes(
    testbed: Testbed,
    namespace: str,
    registry: str,
    prompt_name: str,
    mlflow_client: Any,
    prometheus: PrometheusServer,
) -> None:
    behaviour = traffic_module().Behaviour
    experiment = f"traffic-{uuid.uuid4().hex[:8]}"
    metrics = f"{feedback_metric(experiment)}\n{errors_guard(prometheus.uri)}"
    prometheus.stop()
    try:
        setup(
            testbed, namespace, prompt_name, f"    interval: 1s\n    minSamples: 40\n    metrics:\n{metrics}"
        )
        held = wait_exp(
            testbed,
            namespace,
            lambda obj: condition(obj, "Reconciling").get("reason") == "AnalysisUnavailable",
            120,
            "the analysis to hold on the dead Prometheus",
        )
        assert analysis_status(held)["decision"] == "Hold"
        send_traffic(
            testbed,
            namespace,
            prompt_name,
            experiment,
            {3: behaviour(thumbs=0.3), 4: behaviour(thumbs=0.8)},
            users=400,
        )
        # clearly better feedback, but a source is down: the analysis sees it and still holds
        better = wait_exp(
            testbed,
            namespace,
            lambda obj: any(m.get("verdict") == "Better" for m in analysis_status(obj).get("metrics", [])),
            240,
            "the feedback to be significant",
        )
        assert analysis_status(better)["decision"] == "Hold"
        assert "cannot connect to Prometheus" in analysis_status(better)["reason"]
        assert better["status"]["phase"] == "Completed"
        assert pa(testbed, namespace).get("resolvedVersion") == 3
    finally:
        prometheus.start()
    done = wait_exp(testbed, namespace, lambda obj: obj["status"].get("phase") == "Promoted", 240, "resuming")
    assert pa(testbed, namespace).get("resolvedVersion") == 4
    assert analysis_status(done)["decision"] == "Promote"
    wait_for(
        lambda: "Reconciling" not in {c["type"] for c in exp(testbed, namespace)["status"]["conditions"]},
        30,
        "settled",
    )


def test_broken_query_stalls(
    testbed: Testbed,
    namespace: str,
    registry: str,
    prompt_name: str,
    mlflow_client: Any,
    prometheus: PrometheusServer,
) -> None:
    guard = (
        "      - {name: errors, role: Guard, direction: Lower, threshold: 0.1, "
        f"prometheus: {{address: '{prometheus.uri}', count: 'sum(rate(', value: 'sum(b)'}}}}"
    )
    setup(testbed, namespace, prompt_name, f"    interval: 1s\n    minSamples: 40\n    metrics:\n{guard}")
    stalled = wait_exp(
        testbed,
        namespace,
        lambda obj: condition(obj, "Stalled").get("reason") == "AnalysisQueryFailed",
        120,
        "Stalled on the query Prometheus refuses",
    )
    status = analysis_status(stalled)
    assert status["decision"] == "Hold"
    assert "bad_data" in status["reason"]
    assert condition(stalled, "Ready").get("status") == "False"
    assert stalled["status"]["phase"] == "Completed"  # the split stays
