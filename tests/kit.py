"""Helpers shared by integration and e2e tests: waiting, applying YAML, the operator process."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from promptalias.testbed import Testbed
from promptalias.testbed.operator import OperatorProcess


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class NotObservedYetError(AssertionError):
    """The operator has not yet written status for the object's current generation."""


def current_status(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The status, but only once the operator has written it for the object's current generation.

    Every wait on an operator-written field goes through this: a field that was already true before
    a spec change (the old Ready reason, the old version) must not satisfy a wait for the new one.
    """
    if not obj:
        return None
    status: dict[str, Any] = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    if generation is None or status.get("observedGeneration") != generation:
        return None
    return status


def condition_of(status: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """The condition `type_` of a status (an empty dict when absent)."""
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == type_:
            found: dict[str, Any] = cond
            return found
    return {}


def metric_total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of metric `name` whose labels contain `labels` (a value ending with the
    given one matches too, so `registry="ns/mlflow"` finds `PromptRegistry ns/mlflow`)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != name:
                continue
            if all(str(sample.labels.get(k, "")).endswith(v) for k, v in labels.items()):
                total += sample.value
    return total


REGISTRY_POLLS = "promptalias_registry_polls_total"


def after_polls(operator: OperatorProcess, namespace: str, registry: str = "mlflow", polls: int = 2) -> None:
    """Wait until the operator has completed `polls` more drift polls of the PromptRegistry (each one
    reads every prompt in use and wakes the resources whose prompt changed): the positive marker for
    "nothing happened" assertions, instead of a sleep that a slow machine can outrun."""

    def count() -> float:
        return metric_total(operator.metrics(), REGISTRY_POLLS, registry=f"{namespace}/{registry}")

    start = count()
    wait_for(lambda: count() >= start + polls, 60, f"{polls} more polls of registry {namespace}/{registry}")


def apply_yaml(testbed: Testbed, text: str) -> None:
    testbed.kubectl("apply", "-f", "-", stdin=text)


def ready_registry(testbed: Testbed, namespace: str, refresh_interval: str = "2s") -> str:
    """A PromptRegistry `mlflow` in `namespace` for the testbed's MLflow (refreshInterval 2s unless
    told), waited for until Ready (by whichever operator serves the namespace). Returns its name."""
    apply_yaml(
        testbed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptRegistry
metadata: {{name: mlflow, namespace: {namespace}}}
spec:
  trackingUri: {testbed.mlflow_uri}
  refreshInterval: {refresh_interval}
""",
    )
    wait_for(
        lambda: condition(testbed, "promptregistry", namespace, "mlflow", "Ready") == "True",
        30,
        "the PromptRegistry to become Ready",
    )
    return "mlflow"


def get_object(testbed: Testbed, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
    args = ["get", kind, name, "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    result: dict[str, Any] = json.loads(testbed.kubectl(*args).stdout)
    return result


def condition(testbed: Testbed, kind: str, namespace: str | None, name: str, type_: str) -> str | None:
    """The status ("True"/"False"/"Unknown") of a condition written for the current generation, or None
    when absent. Raises while the operator has not yet observed the current generation, so that
    neither a wait nor an `is None` assertion can pass on a status written for an older spec."""
    obj = get_object(testbed, kind, namespace, name)
    status = current_status(obj)
    if status is None:
        generation = (obj.get("metadata") or {}).get("generation")
        seen = (obj.get("status") or {}).get("observedGeneration")
        raise NotObservedYetError(
            f"{kind} {namespace}/{name}: status is for generation {seen}, spec is {generation}"
        )
    found = condition_of(status, type_)
    return str(found["status"]) if found else None


__all__ = [
    "REGISTRY_POLLS",
    "NotObservedYetError",
    "OperatorProcess",
    "after_polls",
    "apply_yaml",
    "condition",
    "condition_of",
    "current_status",
    "get_object",
    "metric_total",
    "ready_registry",
    "wait_for",
]
