"""A registry's status after a check (reconcile/registry_status.py), and reading registry bodies
(reconcile/registry.py: `key_of`, `known_registry`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from promptalias.api.conditions import Reason
from promptalias.api.promptalias import RegistryKind
from promptalias.api.registry import ClusterPromptRegistrySpec, PromptRegistrySpec
from promptalias.reconcile.registry import RegistryKey, key_of, known_registry
from promptalias.reconcile.registry_status import Check, connected, plan_registry_status

NOW = datetime(2026, 12, 1, 9, 30, 15, 500000, tzinfo=UTC)
STAMP = "2026-12-01T09:30:15Z"
EARLIER = "2026-12-01T08:00:00Z"
URI = "http://mlflow:5000"


def ready(status: str, reason: str, since: str = EARLIER) -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": "m", "lastTransitionTime": since}


OK = Check(True, Reason.CONNECTED, "MLflow 3.5.0 answered", server_version="3.5.0")
DOWN = Check(False, Reason.REGISTRY_UNAVAILABLE, "connection refused")
REFUSED = Check(False, Reason.UNAUTHORIZED, "403")


@dataclass(frozen=True)
class Case:
    name: str
    stored: dict[str, Any]
    check: Check
    since: str  # the new Ready's lastTransitionTime
    ready_again: bool
    event: tuple[str, str] | None  # (type, reason)
    server_version: str | None


CASES = [
    Case("first check, connected", {}, OK, STAMP, True, ("Normal", "Connected"), "3.5.0"),
    Case("first check, down", {}, DOWN, STAMP, False, ("Warning", "RegistryUnavailable"), None),
    Case(
        "still connected: nothing to tell, the transition time stays",
        {"conditions": [ready("True", "Connected")], "serverVersion": "3.4.0"},
        OK,
        EARLIER,
        False,
        None,
        "3.5.0",
    ),
    Case(
        "back after an outage: wake the aliases",
        {"conditions": [ready("False", "RegistryUnavailable")], "serverVersion": "3.4.0"},
        OK,
        STAMP,
        True,
        ("Normal", "Connected"),
        "3.5.0",
    ),
    Case(
        "goes down: the server version seen last stays",
        {"conditions": [ready("True", "Connected")], "serverVersion": "3.4.0"},
        DOWN,
        STAMP,
        False,
        ("Warning", "RegistryUnavailable"),
        "3.4.0",
    ),
    Case(
        "another reason, still not ready: a new Event, the same transition time",
        {"conditions": [ready("False", "RegistryUnavailable")]},
        REFUSED,
        EARLIER,
        False,
        ("Warning", "Unauthorized"),
        None,
    ),
    Case(
        "the same failure again: quiet",
        {"conditions": [ready("False", "Unauthorized")]},
        REFUSED,
        EARLIER,
        False,
        None,
        None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_registry_status(case: Case) -> None:
    plan = plan_registry_status(case.stored, case.check, generation=4, now=NOW)
    assert plan.status == {
        "observedGeneration": 4,
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if case.check.ready else "False",
                "reason": str(case.check.reason),
                "message": case.check.message,
                "lastTransitionTime": case.since,
                "observedGeneration": 4,
            }
        ],
        "serverVersion": case.server_version,
        "lastCheckTime": STAMP,
    }
    assert plan.ready_again is case.ready_again
    expected = None if case.event is None else (*case.event, case.check.message)
    assert plan.event == expected


def test_connected_says_whether_the_credentials_were_used() -> None:
    spec = PromptRegistrySpec.model_validate({"trackingUri": URI})
    assert connected(spec, "3.5.0", authenticated=True) == Check(
        True, Reason.CONNECTED, f"MLflow 3.5.0 at {URI} answered with the configured credentials", "3.5.0"
    )
    assert connected(spec, "3.5.0", authenticated=False).message == f"MLflow 3.5.0 at {URI} answered"


def test_a_cluster_registry_without_conditions_serves_nobody_even_when_connected() -> None:
    spec = ClusterPromptRegistrySpec.model_validate({"trackingUri": URI})
    check = connected(spec, "3.5.0", authenticated=False)
    assert (check.ready, check.reason, check.server_version) == (False, Reason.NO_NAMESPACES_ALLOWED, "3.5.0")
    assert "spec.conditions is empty" in check.message


# ---- registry bodies ---------------------------------------------------------------------------


def registry_body(kind: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "promptalias.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "mlflow", "uid": "u1", "generation": 3, **meta},
        "spec": {"trackingUri": URI},
    }


def test_key_of_a_cluster_registry_has_no_namespace_whatever_its_metadata_says() -> None:
    meta = {"namespace": "billing", "name": "mlflow"}
    assert key_of(RegistryKind.PROMPT_REGISTRY, meta) == RegistryKey(
        RegistryKind.PROMPT_REGISTRY, "billing", "mlflow"
    )
    assert key_of(RegistryKind.CLUSTER_PROMPT_REGISTRY, meta) == RegistryKey(
        RegistryKind.CLUSTER_PROMPT_REGISTRY, None, "mlflow"
    )


def test_known_registry_of_a_body() -> None:
    known = known_registry(RegistryKind.PROMPT_REGISTRY, registry_body("PromptRegistry", namespace="billing"))
    assert (known.key, known.uid, known.generation) == (
        RegistryKey(RegistryKind.PROMPT_REGISTRY, "billing", "mlflow"),
        "u1",
        3,
    )
    assert known.endpoint == URI
    cluster = known_registry(RegistryKind.CLUSTER_PROMPT_REGISTRY, registry_body("ClusterPromptRegistry"))
    assert isinstance(cluster.spec, ClusterPromptRegistrySpec)


def test_a_registry_body_that_does_not_parse_is_a_value_error() -> None:
    body = registry_body("PromptRegistry", namespace="billing")
    body["spec"] = {"trackingUri": 7, "refreshInterval": "soon"}
    with pytest.raises(ValueError, match="PromptRegistry"):
        known_registry(RegistryKind.PROMPT_REGISTRY, body)
