"""Flux (kstatus) and Argo CD read our status right, proven on objects read back from the apiserver.

A PromptAlias goes through its life on the real apiserver; at each step the status is written
through the status subresource the way the operator writes it (the CRD schema validates it), and
the object the apiserver answers with is given to the real kstatus library (sigs.k8s.io/cli-utils,
built by testbed/tools.py) and to the Argo CD health.lua in gitops/. Both must agree with what the
step means. Each check uses the answer to its own write, never a later read: an operator running in
the same test session (cluster-wide) reconciles these objects too and may overwrite their status.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from promptalias.testbed import Testbed
from promptalias.testbed.tools import ArgoHealth, Tools, ensure_tools, kstatus
from promptalias.testbed.tools import health as live_health

pytestmark = [pytest.mark.integration, pytest.mark.without_operator]

ROOT = Path(__file__).resolve().parents[2]
GROUP = "promptalias.io"
HEALTH = ROOT / "gitops" / "argocd" / "resource_customizations" / GROUP


@pytest.fixture(scope="module")
def tools() -> Tools:
    return ensure_tools()


@pytest.fixture(scope="module", autouse=True)
def crds(testbed: Testbed) -> None:
    """Install (or update) crds/ — idempotent; other modules may install them too."""
    manager = "--field-manager=promptalias-kstatus-tests"
    testbed.kubectl("apply", "--server-side", "--force-conflicts", manager, "-f", str(ROOT / "crds"))
    names = [f"crd/{plural}.{GROUP}" for plural in ("promptaliases", "promptregistries")]
    testbed.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


def condition(type_: str, status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "observedGeneration": generation,
    }


class Resource:
    """One custom object on the testbed, changed with kubectl the way users and the operator do."""

    def __init__(self, testbed: Testbed, namespace: str, resource: str, name: str) -> None:
        self.testbed, self.namespace, self.resource, self.name = testbed, namespace, resource, name

    def get(self) -> dict[str, Any]:
        out = self.testbed.kubectl("get", "-n", self.namespace, self.resource, self.name, "-o", "json").stdout
        obj: dict[str, Any] = json.loads(out)
        return obj

    def patch(self, patch: dict[str, Any], *, status: bool = False) -> dict[str, Any]:
        """The object as the apiserver stored it by this very write."""
        args = ["patch", "-n", self.namespace, self.resource, self.name, "--type=merge", "-o", "json"]
        if status:
            args.append("--subresource=status")  # the operator's only way to write status
        obj: dict[str, Any] = json.loads(self.testbed.kubectl(*args, "-p", json.dumps(patch)).stdout)
        return obj

    def write_status(self, observed: int, *conditions: dict[str, Any], **fields: Any) -> dict[str, Any]:
        body = {"observedGeneration": observed, "conditions": list(conditions), **fields}
        # A merge patch replaces the conditions list as a whole, as the operator's status writes do.
        return self.patch({"status": body}, status=True)


def create(testbed: Testbed, manifest: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(
        testbed.kubectl("create", "-o", "json", "-f", "-", stdin=json.dumps(manifest)).stdout
    )
    return obj


# Holds deleted objects for the deletion step; not the operator's finalizer, which it removes itself.
HOLD = "kstatus-test.promptalias.io/hold"


def check(tools: Tools, health: ArgoHealth, obj: dict[str, Any]) -> tuple[str, str]:
    return kstatus(obj, tools)["status"], health(obj)["status"]


def test_promptalias_lifecycle_reads_right_in_kstatus_and_argocd(
    testbed: Testbed, tools: Tools, namespace: str
) -> None:
    health = ArgoHealth(HEALTH / "PromptAlias" / "health.lua")
    manifest = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "PromptAlias",
        "metadata": {"name": "invoice-parser-production", "namespace": namespace, "finalizers": [HOLD]},
        "spec": {
            "registryRef": {"name": "mlflow"},
            "prompt": "invoice-parser",
            "alias": "production",
            "version": 3,
        },
    }
    obj = create(testbed, manifest)
    alias = Resource(testbed, namespace, f"promptaliases.{GROUP}", "invoice-parser-production")
    assert obj["metadata"]["generation"] == 1
    assert "status" not in obj or not obj["status"].get("conditions")
    # Before the operator has written anything, kstatus has nothing to go by and reads Current,
    # while Argo CD's check waits: the operator should write Reconciling=True on first sight.
    assert check(tools, health, obj) == ("Current", "Progressing")

    # The operator picks it up: Reconciling while it moves the alias.
    obj = alias.write_status(
        1,
        condition("Ready", "Unknown", "Progressing", "Moving the alias to version 3", 1),
        condition("Reconciling", "True", "Progressing", "Moving the alias to version 3", 1),
    )
    assert check(tools, health, obj) == ("InProgress", "Progressing")

    # Done: Ready=True for the current generation, no Reconciling.
    obj = alias.write_status(
        1,
        condition("Ready", "True", "Synced", "prompts:/invoice-parser@production points at version 3", 1),
        resolvedVersion=3,
        uri="prompts:/invoice-parser@production",
    )
    assert check(tools, health, obj) == ("Current", "Healthy")
    assert health(obj)["message"] == "prompts:/invoice-parser@production is at version 3"

    # Git moves the alias: a new generation the operator has not observed yet.
    obj = alias.patch({"spec": {"version": 9}})
    assert obj["metadata"]["generation"] == 2
    assert obj["status"]["observedGeneration"] == 1
    assert check(tools, health, obj) == ("InProgress", "Progressing")

    # Version 9 does not exist: a permanent error until the spec or MLflow changes.
    message = "Version 9 of prompt invoice-parser does not exist; register it or fix spec.version"
    obj = alias.write_status(
        2,
        condition("Ready", "False", "VersionNotFound", message, 2),
        condition("Stalled", "True", "VersionNotFound", message, 2),
    )
    result = kstatus(obj, tools)
    assert result["status"] == "Failed"
    assert result["message"] == message
    assert health(obj) == {"status": "Degraded", "message": f"VersionNotFound: {message}"}

    # Fixed in Git, then MLflow is down: the operator retries, so it says Reconciling.
    obj = alias.patch({"spec": {"version": 3}})
    unavailable = "MLflow did not answer within 5s; keeping version 3"
    obj = alias.write_status(
        3,
        condition("Ready", "False", "RegistryUnavailable", unavailable, 3),
        condition("Reconciling", "True", "RegistryUnavailable", unavailable, 3),
    )
    assert check(tools, health, obj) == ("InProgress", "Progressing")

    # Ready=False with neither Reconciling nor Stalled (e.g. AliasNotFound in follow mode): kstatus
    # cannot tell progress from doom and says InProgress (Flux waits for its health-check timeout);
    # Argo CD follows our vocabulary, where "not retrying and not ready" is Degraded.
    obj = alias.write_status(3, condition("Ready", "False", "RegistryUnavailable", unavailable, 3))
    assert check(tools, health, obj) == ("InProgress", "Degraded")

    # Drift reported, not corrected (driftPolicy Report), written as reconcile/alias.py does today:
    # Ready=False + Drifted=True. Argo CD shows it as Degraded at once; kstatus only as InProgress.
    obj = alias.patch({"spec": {"driftPolicy": "Report"}})
    drift = "alias was moved outside Git and points at version 5, not 3; driftPolicy is Report"
    obj = alias.write_status(
        4,
        condition("Ready", "False", "DriftDetected", drift, 4),
        condition("Drifted", "True", "DriftDetected", drift, 4),
        resolvedVersion=5,
    )
    assert check(tools, health, obj) == ("InProgress", "Degraded")
    # With Stalled=True as well (nothing changes until Git or MLflow does), both agree at once.
    obj = alias.write_status(
        4,
        condition("Ready", "False", "DriftDetected", drift, 4),
        condition("Drifted", "True", "DriftDetected", drift, 4),
        condition("Stalled", "True", "DriftDetected", drift, 4),
        resolvedVersion=5,
    )
    assert check(tools, health, obj) == ("Failed", "Degraded")

    # Deletion waits on finalizers: both read it as in progress, whatever the status says.
    testbed.kubectl("delete", "-n", namespace, f"promptaliases.{GROUP}", alias.name, "--wait=false")
    obj = alias.get()
    assert obj["metadata"].get("deletionTimestamp")
    assert check(tools, health, obj) == ("Terminating", "Progressing")
    # What a newcomer runs: `python -m promptalias.testbed.tools health pa/NAME -n NS`.
    shown = live_health(f"pa/{alias.name}", namespace, testbed.kubectl_path, testbed.kubeconfig)
    assert shown["kstatus"]["status"] == "Terminating"
    assert shown["argocd"] == {"status": "Progressing", "message": "Deleting"}
    finalizers_off = json.dumps({"metadata": {"finalizers": None}})
    testbed.kubectl(
        "patch", "-n", namespace, alias.resource, alias.name, "--type=merge", "-p", finalizers_off
    )
    gone = testbed.kubectl("get", "-n", namespace, alias.resource, alias.name, check=False)
    assert "NotFound" in gone.stderr


def test_promptregistry_reads_right_in_kstatus_and_argocd(
    testbed: Testbed, tools: Tools, namespace: str
) -> None:
    health = ArgoHealth(HEALTH / "PromptRegistry" / "health.lua")
    manifest = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "PromptRegistry",
        "metadata": {"name": "mlflow", "namespace": namespace},
        "spec": {"trackingUri": "http://mlflow.mlflow.svc:5000"},
    }
    testbed.kubectl("create", "-f", "-", stdin=json.dumps(manifest))
    registry = Resource(testbed, namespace, f"promptregistries.{GROUP}", "mlflow")
    obj = registry.write_status(
        1, condition("Ready", "True", "Connected", "MLflow 3.17.1 answered", 1), serverVersion="3.17.1"
    )
    assert check(tools, health, obj) == ("Current", "Healthy")
    assert health(obj)["message"] == "Connected to MLflow 3.17.1"

    obj = registry.patch({"spec": {"timeout": "10s"}})
    assert check(tools, health, obj) == ("InProgress", "Progressing")

    refused = "MLflow refused the credentials (HTTP 401)"
    obj = registry.write_status(
        2,
        condition("Ready", "False", "Unauthorized", refused, 2),
        condition("Stalled", "True", "Unauthorized", refused, 2),
    )
    assert check(tools, health, obj) == ("Failed", "Degraded")
