"""The real operator, run out of cluster as the chart's ServiceAccount, reconciles the invoice-parser
story: proof that the chart's RBAC is enough (test_rbac_chart.py proves it is not broader).

The chart is installed with helm; the operator runs with a token of the chart's ServiceAccount
(TokenRequest, `kubectl create token`) and with the exact command line of the installed Deployment
(listen addresses moved to free loopback ports). Namespace mode is the one run live: its RBAC is the
narrower one, and a cluster-wide operator would also reconcile other tests' objects on the shared
testbed. Cluster-wide mode grants the same rules cluster-wide (test_rbac_chart.py checks both sets
exactly), so what suffices here suffices there.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kit import wait_for
from promptalias.testbed import Testbed
from promptalias.testbed.ports import free_port
from promptalias.testbed.tools import helm

# without_operator: the session operator must not serve this namespace; this test runs its own.
pytestmark = [pytest.mark.integration, pytest.mark.without_operator]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "promptalias"


@pytest.fixture(scope="module", autouse=True)
def crds(testbed: Testbed) -> None:
    manager = "--field-manager=promptalias-rbac-operator-tests"
    testbed.kubectl("apply", "--server-side", "--force-conflicts", manager, "-f", str(ROOT / "crds"))
    testbed.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))


@pytest.fixture(params=[False, True], ids=["defaults", "webhook"])
def release(request: pytest.FixtureRequest, testbed: Testbed, namespace: str) -> Iterator[tuple[str, str]]:
    """The chart installed in its own namespace, watching the test's namespace: (namespace, name).
    Once with the default values, once with the sidecar-injection webhook (Helm-made certificate)."""
    system = f"pa-system-{uuid.uuid4().hex[:6]}"
    testbed.kubectl("create", "namespace", system)
    chart_helm = helm(testbed.kubeconfig)
    chart_helm.run(
        "install",
        "pa",
        str(CHART),
        "--namespace",
        system,
        "--set",
        "crds.enabled=false",  # installed above from crds/, shared with the other tests
        "--set-json",
        f"watchNamespaces={json.dumps([namespace])}",
        "--set-json",
        f"webhook={json.dumps({'enabled': request.param})}",
    )
    try:
        yield system, "pa-promptalias"
    finally:
        chart_helm.run("uninstall", "pa", "--namespace", system, "--wait", "--timeout", "60s", check=False)
        testbed.kubectl("delete", "namespace", system, "--wait=false")


def service_account_kubeconfig(testbed: Testbed, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig for the testbed's apiserver authenticating with a fresh token of the account."""
    token = testbed.kubectl(
        "create", "token", account, "--namespace", namespace, "--duration=1h"
    ).stdout.strip()
    config = yaml.safe_load(testbed.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = account
    path.write_text(yaml.safe_dump(config))
    return path


def loopback(args: list[str], mounts: dict[str, Path]) -> tuple[list[str], dict[str, int]]:
    """The Deployment's arguments with each 0.0.0.0:PORT listener moved to a free loopback port and
    each mounted directory replaced by its local copy."""
    ports: dict[str, int] = {}
    moved = []
    for arg in args:
        match = re.fullmatch(r"--([a-z-]+)-listen=0\.0\.0\.0:\d+", arg)
        if match:
            ports[match.group(1)] = port = free_port()
            moved.append(f"--{match.group(1)}-listen=127.0.0.1:{port}")
            continue
        for mount, local in mounts.items():
            arg = arg.replace(f"={mount}", f"={local}")  # noqa: PLW2901 - rewriting is the point
        moved.append(arg)
    return moved, ports


def mounted_secrets(testbed: Testbed, namespace: str, pod: dict[str, Any], root: Path) -> dict[str, Path]:
    """The pod's Secret volumes written to local directories, as the kubelet would mount them."""
    volumes = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    mounts: dict[str, Path] = {}
    for mount in pod["containers"][0].get("volumeMounts", []):
        if mount["name"] in volumes:
            secret = json.loads(
                testbed.kubectl("get", "secret", volumes[mount["name"]], "-n", namespace, "-o", "json").stdout
            )
            local = root / mount["name"]
            local.mkdir()
            for key, value in secret["data"].items():
                (local / key).write_bytes(base64.b64decode(value))
            mounts[mount["mountPath"]] = local
    return mounts


def admission_review(url: str, server_name: str, ca: bytes, namespace: str) -> dict[str, Any]:
    """POST an AdmissionReview for an annotated pod, verifying the server as the apiserver would."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "namespace": namespace, "annotations": {"promptalias.io/inject": "true"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "app",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "test"},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }
    context = ssl.create_default_context(cadata=ca.decode())
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPSConnection(parsed.hostname or "", parsed.port, context=context, timeout=10)
    # The apiserver dials the Service name: check the certificate for that name, not for 127.0.0.1.
    connection.sock = context.wrap_socket(
        socket.create_connection((parsed.hostname, parsed.port), timeout=10), server_hostname=server_name
    )
    connection.request("POST", parsed.path, json.dumps(review), {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    answer: dict[str, Any] = json.loads(response.read())["response"]
    connection.close()
    return answer


def register_versions(prompt: str, count: int) -> None:
    import mlflow.genai

    for n in range(1, count + 1):
        mlflow.genai.register_prompt(
            name=prompt, template=f"v{n}: extract the invoice fields from {{{{text}}}}"
        )


def ready(testbed: Testbed, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    obj = json.loads(testbed.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)
    status: dict[str, Any] = obj.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    current = status.get("observedGeneration") == obj["metadata"]["generation"]
    return status if current and conditions.get("Ready") == "True" else None


def test_operator_as_the_charts_service_account_reconciles_the_story(
    testbed: Testbed,
    namespace: str,
    release: tuple[str, str],
    prompt_name: str,
    mlflow_client: Any,
    tmp_path: Path,
) -> None:
    system, account = release
    deployment = json.loads(testbed.kubectl("get", "deployment", account, "-n", system, "-o", "json").stdout)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account
    mounts = mounted_secrets(testbed, system, pod, tmp_path)
    args, ports = loopback(pod["containers"][0]["args"], mounts)
    assert args[0] == "operator"
    assert f"--namespace={namespace}" in args
    assert "health" in ports

    kubeconfig = service_account_kubeconfig(testbed, system, account, tmp_path / "sa.kubeconfig")
    whoami = testbed.kubectl(f"--kubeconfig={kubeconfig}", "auth", "whoami", "-o", "json")
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{system}:{account}"
    )

    register_versions(prompt_name, 3)
    env = {k: v for k, v in os.environ.items() if k not in {"KUBECONFIG", "MLFLOW_TRACKING_URI"}}
    env.update(
        KUBECONFIG=str(kubeconfig),  # nothing but the ServiceAccount's token
        POD_ID=f"{account}-0",  # what the Deployment sets from metadata.name for kopf peering
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "promptalias.cli.main", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def log_tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])

    def healthy() -> bool:
        if process.poll() is not None:  # pytest.fail is not an Exception: wait_for lets it through
            pytest.fail(f"the operator exited with {process.returncode}:\n{log_tail()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['health']}/healthz", timeout=1) as response:
            return bool(response.status == 200)

    try:
        wait_for(healthy, 60, "the operator's /healthz")
        # kopf started with --peering begins paused and stays paused until its peering object exists;
        # the chart cannot template it (its CRD arrives in the same release), so the operator creates
        # it at startup with the `create` verb the chart grants: a KopfPeering per watched namespace.
        peering = next(arg.split("=", 1)[1] for arg in args if arg.startswith("--peering="))
        wait_for(
            lambda: (
                testbed.kubectl("get", "kopfpeering", peering, "-n", namespace, check=False).returncode == 0
            ),
            15,
            f"the operator to create KopfPeering {namespace}/{peering} (without it kopf never resumes)",
        )
        testbed.kubectl(
            "apply",
            "-f",
            "-",
            stdin=f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptRegistry
metadata: {{name: mlflow, namespace: {namespace}}}
spec: {{trackingUri: "{testbed.mlflow_uri}", refreshInterval: 5s}}
---
apiVersion: promptalias.io/v1alpha1
kind: PromptAlias
metadata: {{name: invoice-parser-production, namespace: {namespace}}}
spec:
  registryRef: {{name: mlflow}}
  prompt: {prompt_name}
  alias: production
  version: 2
""",
        )
        wait_for(lambda: ready(testbed, namespace, "promptregistry", "mlflow"), 30, "the registry Ready")
        status = wait_for(
            lambda: ready(testbed, namespace, "promptalias", "invoice-parser-production"),
            30,
            "the alias Ready",
        )
        assert status["resolvedVersion"] == 2
        assert mlflow_client.get_prompt_version_by_alias(prompt_name, "production").version == 2
        projection = json.loads(
            testbed.kubectl(
                "get", "configmap", "promptalias-invoice-parser-production", "-n", namespace, "-o", "json"
            ).stdout
        )
        assert json.loads(projection["data"][f"{prompt_name}.production.json"])["version"] == 2

        # A change from Git: the operator moves the alias with the same identity.
        testbed.kubectl(
            "patch",
            "promptalias",
            "invoice-parser-production",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec": {"version": 3}}',
        )
        status = wait_for(
            lambda: (
                (s := ready(testbed, namespace, "promptalias", "invoice-parser-production"))
                and s.get("resolvedVersion") == 3
                and s
            ),
            30,
            "the alias at version 3",
        )
        assert mlflow_client.get_prompt_version_by_alias(prompt_name, "production").version == 3
        if "webhook" in ports:
            (webhook,) = json.loads(
                testbed.kubectl("get", "mutatingwebhookconfiguration", account, "-o", "json").stdout
            )["webhooks"]
            service = webhook["clientConfig"]["service"]
            answer = admission_review(
                f"https://127.0.0.1:{ports['webhook']}{service['path']}",
                f"{service['name']}.{service['namespace']}.svc",
                base64.b64decode(webhook["clientConfig"]["caBundle"]),
                namespace,
            )
            assert answer["allowed"] is True
            patch = json.loads(base64.b64decode(answer["patch"]))
            assert "promptalias" in json.dumps(patch)  # the sidecar (or its settings) was added
        # This operator did the work (another one may run cluster-wide in the same test session).
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        passes = re.findall(r"^promptalias_reconciles_total\{[^}]*\} (\d+)$", metrics, re.MULTILINE)
        assert sum(int(n) for n in passes) > 0, metrics
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    # Nothing the operator tried was refused: the RBAC is enough for everything it does.
    refused = [
        line
        for line in log_path.read_text(errors="replace").splitlines()
        if re.search(r"forbidden|\b403\b", line, re.I)
    ]
    assert not refused, "\n".join(refused[:10])
