"""The chart on the real apiserver: every rendered object passes server-side dry-run, and a real
`helm install` / upgrade / uninstall works on the testbed (pods stay Pending: there is no kubelet,
but admission, PodSecurity and the controllers that create ReplicaSets and Pods are real)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptalias.testbed import Testbed
from promptalias.testbed.tools import Helm, helm

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "promptalias"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# Kinds whose CRDs the testbed does not have (cert-manager, Prometheus Operator): the apiserver
# cannot validate them, so they are checked by tests/unit/test_chart.py only. Listed exactly, so
# that no other kind can ever skip validation unnoticed.
NOT_SERVED = {"Certificate", "Issuer", "ServiceMonitor"}


@pytest.fixture(scope="module")
def chart_helm(testbed: Testbed) -> Helm:
    return helm(testbed.kubeconfig)


@pytest.fixture(scope="module")
def ci_namespaces(testbed: Testbed) -> Iterator[list[str]]:
    """The fixed namespaces the ci/ values files name (Roles and sidecar RBAC go there)."""
    names = set()
    for path in CI_VALUES:
        values = yaml.safe_load(path.read_text()) or {}
        names |= set(values.get("watchNamespaces", []))
        names |= set(values.get("rbac", {}).get("secretNamespaces", []))
        names |= {app["namespace"] for app in values.get("sidecarRbac", {}).get("apps", {}).values()}
    created = []
    for name in sorted(names):
        if testbed.kubectl("get", "namespace", name, check=False).returncode != 0:
            testbed.kubectl("create", "namespace", name)
            created.append(name)
    yield sorted(names)
    for name in created:
        testbed.kubectl("delete", "namespace", name, "--wait=false")


def served_kinds(testbed: Testbed) -> set[str]:
    lines = testbed.kubectl("api-resources", "--no-headers", "--verbs=create").stdout.splitlines()
    kinds = {line.split()[-1] for line in lines}
    assert {"Deployment", "CustomResourceDefinition"} <= kinds  # the discovery answered
    return kinds


def chart_crds_match_repository() -> None:
    """Never install stale CRDs on the shared testbed: other tests rely on the current ones."""
    source = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    copy = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert copy == source, "charts/promptalias/files/crds is stale: run hack/tools/sync-chart-crds.sh"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_rendered_object_passes_server_side_dry_run(
    testbed: Testbed, chart_helm: Helm, namespace: str, ci_namespaces: list[str], values: Path
) -> None:
    objects = chart_helm.template(CHART, release="dry", namespace=namespace, values=[values])
    assert objects
    served = served_kinds(testbed)
    skipped = {obj["kind"] for obj in objects if obj["kind"] not in served}
    assert skipped <= NOT_SERVED, f"kinds the apiserver does not serve: {skipped - NOT_SERVED}"
    checked = [obj for obj in objects if obj["kind"] in served]
    result = testbed.kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        "--force-conflicts",  # a dry run validates; who owns a field (e.g. an installed CRD's labels) is moot
        "--field-manager=helm-dry-run",
        "-o",
        "json",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": checked}),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    accepted = json.loads(result.stdout)
    items = accepted["items"] if accepted.get("kind") == "List" else [accepted]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in items) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in checked
    )


def _wait_for(predicate: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def _get(testbed: Testbed, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(testbed.kubectl("get", *args, "-o", "json").stdout)
    return result


def test_helm_install_upgrade_uninstall_on_the_testbed(
    testbed: Testbed, chart_helm: Helm, namespace: str
) -> None:
    chart_crds_match_repository()
    # The restricted Pod Security Standard is enforced: the ReplicaSet controller can only create
    # the pods if the chart's securityContext really is restricted.
    testbed.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    release = f"pa-{uuid.uuid4().hex[:6]}"
    install = chart_helm.run(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--take-ownership",  # the CRDs may already exist (other tests install crds/ directly)
        "--set-json",
        'webhook={"enabled": true}',
        "--timeout",
        "120s",
    )
    try:
        assert "STATUS: deployed" in install.stdout
        assert "The operator watches all namespaces." in install.stdout  # NOTES.txt
        assert f'kopf peering "{release}-promptalias"' in install.stdout

        deployment = _get(testbed, "-n", namespace, "deployment", f"{release}-promptalias")
        assert deployment["spec"]["replicas"] == 2
        pod_spec = deployment["spec"]["template"]["spec"]
        assert pod_spec["serviceAccountName"] == f"{release}-promptalias"
        selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())

        def pods() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = _get(testbed, "-n", namespace, "pods", "-l", selector)["items"]
            return items if len(items) == 2 else []

        created = _wait_for(pods, "the ReplicaSet controller to create 2 pods under PodSecurity restricted")
        assert {pod["status"]["phase"] for pod in created} == {"Pending"}  # no kubelet on the testbed
        for kind in ("serviceaccount", "service", "poddisruptionbudget", "secret"):
            names = [o["metadata"]["name"] for o in _get(testbed, "-n", namespace, kind)["items"]]
            assert any(name.startswith(release) for name in names), (kind, names)
        webhook = _get(testbed, "mutatingwebhookconfiguration", f"{release}-promptalias")
        secret = _get(testbed, "-n", namespace, "secret", f"{release}-promptalias-webhook-tls")
        assert webhook["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
        for crd in ("promptaliases", "promptregistries", "clusterpromptregistries", "promptexperiments"):
            found = _get(testbed, "crd", f"{crd}.promptalias.io")
            assert found["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

        upgrade = chart_helm.run(
            "upgrade",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--reuse-values",
            "--set",
            "replicaCount=3",
        )
        assert "has been upgraded" in upgrade.stdout
        assert _get(testbed, "-n", namespace, "deployment", f"{release}-promptalias")["spec"]["replicas"] == 3
        # The self-signed certificate survives the upgrade (looked up, not regenerated).
        after = _get(testbed, "-n", namespace, "secret", f"{release}-promptalias-webhook-tls")
        assert after["data"] == secret["data"]
    finally:
        chart_helm.run("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
    assert testbed.kubectl(
        "get", "-n", namespace, "deployment", f"{release}-promptalias", check=False
    ).returncode
    assert testbed.kubectl("get", "clusterrole", f"{release}-promptalias", check=False).returncode
    # resource-policy keep: uninstall leaves the CRDs (and every PromptAlias) in place.
    assert _get(testbed, "crd", "promptaliases.promptalias.io")["metadata"]["name"]
