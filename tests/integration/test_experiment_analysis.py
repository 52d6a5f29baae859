"""spec.analysis end to end: the session operator, the real apiserver and MLflow, real traces.

Traffic comes from examples/invoice-parser/traffic.py: users routed through the baseline's real
projection (promptalias.client's hash), each request an MLflow trace linked to its prompt version,
feedback through mlflow.log_feedback. Every wait is on status fields, never on time.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from analysis_kit import (
    analysis_status,
    condition,
    feedback_metric,
    pa,
    send_traffic,
    setup,
    traffic_module,
    wait_exp,
)
from promptalias.testbed import Testbed

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
]  # traffic + several looks, on a loaded machine


def test_better_feedback_promotes_with_the_numbers(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    behaviour = traffic_module().Behaviour
    experiment = f"traffic-{uuid.uuid4().hex[:8]}"
    setup(
        testbed,
        namespace,
        prompt_name,
        f"    interval: 1s\n    minSamples: 40\n    metrics:\n{feedback_metric(experiment)}",
    )
    # before any traffic: Pending (never a failure), Reconciling while the analysis runs
    pending = wait_exp(
        testbed,
        namespace,
        lambda obj: analysis_status(obj).get("decision") == "Pending",
        120,
        "a Pending analysis",
    )
    assert condition(pending, "Reconciling").get("reason") == "Analysing"
    assert condition(pending, "Ready").get("status") == "True"
    send_traffic(
        testbed,
        namespace,
        prompt_name,
        experiment,
        {3: behaviour(thumbs=0.3), 4: behaviour(thumbs=0.8)},
        users=400,
    )
    done = wait_exp(
        testbed,
        namespace,
        lambda obj: (obj.get("status") or {}).get("phase") == "Promoted",
        240,
        "the analysis to promote v4",
    )
    assert pa(testbed, namespace).get("resolvedVersion") == 4
    status = analysis_status(done)
    assert status["decision"] == "Promote"
    thumbs = status["metrics"][0]
    assert thumbs["verdict"] == "Better"
    assert [arm["version"] for arm in thumbs["arms"]] == [3, 4]
    assert thumbs["lower"] > 0
    assert "significantly better" in status["reason"]
    history = done["status"]["history"]
    reasons = [entry["reason"] for entry in history]
    assert "AnalysisPromote" in reasons
    promoted = next(entry for entry in history if entry["reason"] == "Promoted")
    assert promoted["actor"] == "promptalias-analysis"
    assert "Reconciling" not in {c["type"] for c in done["status"]["conditions"]}


def test_guard_breach_aborts_and_leaves_the_baseline(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    behaviour = traffic_module().Behaviour
    experiment = f"traffic-{uuid.uuid4().hex[:8]}"
    metrics = "\n".join(
        [
            feedback_metric(experiment),
            feedback_metric(experiment, "error", "Guard", ", threshold: 0.05, thresholdType: Absolute"),
        ]
    )
    setup(testbed, namespace, prompt_name, f"    interval: 1s\n    minSamples: 40\n    metrics:\n{metrics}")
    send_traffic(
        testbed,
        namespace,
        prompt_name,
        experiment,
        {3: behaviour(errors=0.0, thumbs=0.5), 4: behaviour(errors=0.5, thumbs=0.5)},
        users=240,
    )
    done = wait_exp(
        testbed,
        namespace,
        lambda obj: (obj.get("status") or {}).get("phase") == "Aborted",
        240,
        "the guard to abort v4",
    )
    assert pa(testbed, namespace).get("resolvedVersion") == 3
    status = analysis_status(done)
    assert status["decision"] == "Abort"
    assert status["reason"].startswith("guard breached: error")
    aborted = next(entry for entry in done["status"]["history"] if entry["reason"] == "Aborted")
    assert aborted["actor"] == "promptalias-analysis"


def test_aa_is_never_promoted_and_max_duration_applies_the_policy(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    behaviour = traffic_module().Behaviour
    experiment = f"traffic-{uuid.uuid4().hex[:8]}"
    setup(
        testbed,
        namespace,
        prompt_name,
        "    interval: 1s\n    minSamples: 40\n    maxDuration: 1h\n    onInconclusive: Abort\n"
        f"    metrics:\n{feedback_metric(experiment)}",
    )
    tally = send_traffic(
        testbed, namespace, prompt_name, experiment, {3: behaviour(thumbs=0.5), 4: behaviour(thumbs=0.5)}, 240
    )

    def saw_everything(obj: dict[str, Any]) -> bool:
        metrics = analysis_status(obj).get("metrics") or [{}]
        samples = {arm["version"]: arm["samples"] for arm in metrics[0].get("arms") or []}
        return samples == {3: tally.requests.get(3, 0), 4: tally.requests.get(4, 0)}

    looked = wait_exp(testbed, namespace, saw_everything, 240, "a look at all the A/A feedback")
    assert analysis_status(looked)["decision"] == "Continue"  # the same behaviour: no promotion
    assert looked["status"]["phase"] == "Completed"
    # maxDuration passes: onInconclusive (Abort) applies
    testbed.kubectl(
        "patch",
        "pexp",
        "v4",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"analysis":{"maxDuration":"1s"}}}',
    )
    done = wait_exp(
        testbed,
        namespace,
        lambda obj: obj["status"].get("phase") in ("Aborted", "Promoted"),
        240,
        "the policy",
    )
    assert done["status"]["phase"] == "Aborted"
    assert pa(testbed, namespace).get("resolvedVersion") == 3
    assert (
        "maxDuration 1s reached without a decision (onInconclusive Abort)" in analysis_status(done)["reason"]
    )
    reasons = [entry["reason"] for entry in done["status"]["history"]]
    assert "AnalysisPromote" not in reasons
    assert reasons.index("AnalysisAbort") < reasons.index("Aborted")


def test_dry_run_reports_and_moves_nothing(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    behaviour = traffic_module().Behaviour
    experiment = f"traffic-{uuid.uuid4().hex[:8]}"
    setup(
        testbed,
        namespace,
        prompt_name,
        "    interval: 1s\n    minSamples: 40\n    dryRun: true\n"
        f"    metrics:\n{feedback_metric(experiment)}",
    )
    send_traffic(
        testbed, namespace, prompt_name, experiment, {3: behaviour(thumbs=0.3), 4: behaviour(thumbs=0.8)}, 400
    )
    reported = wait_exp(
        testbed,
        namespace,
        lambda obj: analysis_status(obj).get("decision") == "Promote",
        240,
        "the dry run to report a promotion",
    )
    status = analysis_status(reported)
    assert status["dryRun"] is True
    assert status["reason"].startswith("dry run, nothing moved: would promote")
    # the next look (a positive marker) still finds everything in place
    looks = status["looks"]
    later = wait_exp(
        testbed, namespace, lambda obj: analysis_status(obj).get("looks", 0) > looks, 120, "another look"
    )
    assert later["status"]["phase"] == "Completed"
    assert "promptalias.io/promote" not in (later["metadata"].get("annotations") or {})
    assert pa(testbed, namespace).get("resolvedVersion") == 3
    assert condition(later, "Reconciling").get("reason") == "Analysing"


def test_dead_source_holds_and_no_traces_yet_is_pending(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    setup(
        testbed,
        namespace,
        prompt_name,
        "    interval: 1s\n    minSamples: 40\n    metrics:\n"
        + feedback_metric(f"not-yet-{uuid.uuid4().hex[:8]}")
        + "\n      - {name: errors, role: Guard, direction: Lower, threshold: 0.1, "
        "prometheus: {address: 'http://127.0.0.1:9', count: 'sum(a)', value: 'sum(b)', timeout: 2s}}",
    )
    held = wait_exp(
        testbed,
        namespace,
        lambda obj: condition(obj, "Reconciling").get("reason") == "AnalysisUnavailable",
        120,
        "the analysis to hold on the unreachable Prometheus",
    )
    status = analysis_status(held)
    assert status["decision"] == "Hold"
    assert status["reason"].startswith("cannot read the metrics")
    verdicts = {m["name"]: m["verdict"] for m in status["metrics"]}
    assert verdicts == {"thumbs": "Pending", "errors": "Error"}
    thumbs, errors = status["metrics"]
    assert "has no experiment" in thumbs["reason"]  # no traces yet: Pending, saying which name to check
    assert "cannot connect to Prometheus" in errors["reason"]
    assert held["status"]["phase"] == "Completed"  # the split stays
    assert condition(held, "Ready").get("status") == "True"
