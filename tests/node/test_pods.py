"""The product as pods on a real node: `helm install`, the operator pod, an injected app pod.

Every wait is on a positive marker (Ready conditions, status.observedGeneration, the MLflow
alias, the app's answer); timeouts are generous because the machine is shared and loaded.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from promptalias.testbed import Testbed
from promptalias.testbed.tools import Helm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

CHART = Path(__file__).resolve().parents[2] / "charts" / "promptalias"
APP_IMAGE = "localhost/promptalias/invoice-app:latest"


def wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
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


def kget(bed: Testbed, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(bed.kubectl("get", *args, "-o", "json").stdout)
    return result


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def operator_pods(bed: Testbed, namespace: str, release: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={release}"
    items: list[dict[str, Any]] = kget(bed, "pods", "-n", namespace, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def alias_version(client: Any, prompt: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_prompt_version_by_alias(prompt, alias).version)
    except MlflowException:
        return None


def alias_status(bed: Testbed, namespace: str, name: str) -> dict[str, Any]:
    obj = kget(bed, "promptalias", "-n", namespace, name)
    status: dict[str, Any] = obj.get("status") or {}
    status["_fresh"] = status.get("observedGeneration") == obj["metadata"]["generation"]
    return status


def is_ready(status: dict[str, Any]) -> bool:
    return status["_fresh"] and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
    )


def _register(bed: Testbed, client: Any, prompt: str) -> None:
    """invoice-parser v1-v3 in MLflow, each tagged approved (the story's policy)."""
    for n in range(1, 4):  # the client's own URIs: no global MLflow state changes for other tests
        version = client.register_prompt(name=prompt, template=f"v{n}: parse {{{{text}}}}")
        client.set_prompt_version_tag(prompt, version.version, "approved", "true")


@pytest.fixture(scope="module")
def story(node_bed: Testbed, node_mlflow: Any) -> Iterator[dict[str, str]]:
    """The operator installed by helm with default values, plus the invoice-parser prompt in MLflow."""
    from promptalias.testbed.tools import helm

    chart_helm: Helm = helm(node_bed.kubeconfig)
    namespace = f"promptalias-{uuid.uuid4().hex[:5]}"
    release = "promptalias"
    prompt = f"invoice-parser-{uuid.uuid4().hex[:6]}"
    _register(node_bed, node_mlflow, prompt)
    node_bed.kubectl("create", "namespace", namespace)
    # The README's command, with default values: the image is the chart's default name, which the
    # testbed imported into containerd.
    install = chart_helm.run(
        "install", release, str(CHART), "--namespace", namespace, "--wait", "--timeout", "600s", timeout=700
    )
    assert "STATUS: deployed" in install.stdout
    try:
        yield {"namespace": namespace, "release": release, "prompt": prompt}
    finally:
        chart_helm.run(
            "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "300s", check=False
        )
        node_bed.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _apply(bed: Testbed, text: str) -> None:
    bed.kubectl("apply", "-f", "-", stdin=text)


def _registry_and_alias(bed: Testbed, namespace: str, prompt: str, version: int) -> None:
    _apply(
        bed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptRegistry
metadata: {{name: mlflow, namespace: {namespace}}}
spec: {{trackingUri: "{bed.mlflow_uri}", refreshInterval: 5s}}
---
apiVersion: promptalias.io/v1alpha1
kind: PromptAlias
metadata: {{name: invoice-parser-production, namespace: {namespace}}}
spec:
  registryRef: {{name: mlflow}}
  prompt: {prompt}
  alias: production
  version: {version}
  policy:
    requireVersionTags: {{approved: "true"}}
""",
    )


def _set_version(bed: Testbed, namespace: str, version: int) -> None:
    bed.kubectl(
        "patch",
        "promptalias",
        "-n",
        namespace,
        "invoice-parser-production",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"version": version}}),
    )


def _lands(
    bed: Testbed, client: Any, namespace: str, prompt: str, version: int, timeout: float = 300
) -> None:
    wait(
        lambda: (
            alias_version(client, prompt, "production") == version
            and is_ready(alias_status(bed, namespace, "invoice-parser-production"))
        ),
        timeout,
        f"MLflow {prompt}@production == {version} and the PromptAlias Ready for its generation",
    )


def test_helm_default_install_runs_the_operator_as_pods_and_reconciles(
    node_bed: Testbed, node_mlflow: Any, story: dict[str, str]
) -> None:
    namespace, release, prompt = story["namespace"], story["release"], story["prompt"]
    pods = wait(
        lambda: len(p := operator_pods(node_bed, namespace, release)) == 2 and all(map(ready, p)) and p,
        600,
        "both operator replicas Ready (their real readiness probes)",
    )
    for pod in pods:
        operator = next(c for c in pod["spec"]["containers"] if c["name"] == "operator")
        assert operator["image"] == "ghcr.io/promptalias/promptalias:0.1.0"
        assert operator["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["spec"]["nodeName"] == "promptalias-node"
        assert pod["status"]["podIP"].startswith("10.244.0.")

    _registry_and_alias(node_bed, namespace, prompt, 2)
    _lands(node_bed, node_mlflow, namespace, prompt, 2)

    # Failover: delete the operator pod that holds the kopf peering; the other replica (and then
    # the Deployment's new pod) takes over and the next move still lands.
    for pod in operator_pods(node_bed, namespace, release):
        node_bed.kubectl("delete", "pod", "-n", namespace, pod["metadata"]["name"], "--wait=false")
        break
    _set_version(node_bed, namespace, 3)
    _lands(node_bed, node_mlflow, namespace, prompt, 3)
    wait(
        lambda: len(p := operator_pods(node_bed, namespace, release)) == 2 and all(map(ready, p)),
        600,
        "the Deployment to replace the deleted pod",
    )
    _set_version(node_bed, namespace, 2)
    _lands(node_bed, node_mlflow, namespace, prompt, 2)


def _app_pod(namespace: str, image: str, prompt: str) -> str:
    return f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: invoice-parser, namespace: {namespace}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: invoice-app
  namespace: {namespace}
  annotations:
    promptalias.io/inject: "true"
    promptalias.io/prompts: promptalias-invoice-parser-production
spec:
  serviceAccountName: invoice-parser
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {{type: RuntimeDefault}}
  containers:
    - name: app
      image: {image}
      imagePullPolicy: IfNotPresent
      env:
        - {{name: PROMPT_URI, value: "prompts:/{prompt}/production"}}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {{drop: [ALL]}}
"""


def _app_version(bed: Testbed, namespace: str) -> int:
    code = (
        "import json,urllib.request as u;"
        "print(json.load(u.urlopen('http://127.0.0.1:8080/parse?text=ACME',timeout=5))['version'])"
    )
    out = bed.kubectl("exec", "-n", namespace, "invoice-app", "-c", "app", "--", "python", "-c", code)
    return int(out.stdout.strip())


def _serves(bed: Testbed, namespace: str, version: int) -> bool:
    return _app_version(bed, namespace) == version


def test_injected_app_pod_in_a_restricted_namespace_follows_flips_without_restart(
    node_bed: Testbed, node_mlflow: Any, story: dict[str, str]
) -> None:
    from promptalias.testbed.tools import helm

    namespace, release = story["namespace"], story["release"]
    prompt = f"invoice-parser-app-{uuid.uuid4().hex[:6]}"  # one PromptAlias per MLflow alias
    _register(node_bed, node_mlflow, prompt)
    app_ns = f"billing-{uuid.uuid4().hex[:5]}"
    node_bed.kubectl("create", "namespace", app_ns)
    node_bed.kubectl("label", "namespace", app_ns, "pod-security.kubernetes.io/enforce=restricted")
    values = {
        "webhook": {"enabled": True},
        "sidecarRbac": {
            "apps": {
                "invoice-parser": {
                    "namespace": app_ns,
                    "serviceAccount": "invoice-parser",
                    "promptAliases": ["invoice-parser-production"],
                }
            }
        },
    }
    upgrade = helm(node_bed.kubeconfig).run(
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--reuse-values",
        *[arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")],
        "--wait",
        "--timeout",
        "600s",
        timeout=700,
    )
    assert "has been upgraded" in upgrade.stdout
    try:
        _registry_and_alias(node_bed, app_ns, prompt, 2)
        _lands(node_bed, node_mlflow, app_ns, prompt, 2)
        # The webhook is called by the apiserver through the operator's Service (kube-proxy).
        _apply(node_bed, _app_pod(app_ns, APP_IMAGE, prompt))
        pod = kget(node_bed, "pod", "-n", app_ns, "invoice-app")
        sidecars = [c["name"] for c in pod["spec"].get("initContainers") or []]
        assert sidecars == ["promptalias-sidecar"], "the admission webhook injected the native sidecar"
        wait(lambda: ready(kget(node_bed, "pod", "-n", app_ns, "invoice-app")), 600, "the app pod Ready")
        assert _app_version(node_bed, app_ns) == 2
        for version in (3, 2):
            _set_version(node_bed, app_ns, version)
            _lands(node_bed, node_mlflow, app_ns, prompt, version)
            wait(functools.partial(_serves, node_bed, app_ns, version), 300, f"the app to serve v{version}")
        pod = kget(node_bed, "pod", "-n", app_ns, "invoice-app")
        statuses = pod["status"]["containerStatuses"] + pod["status"]["initContainerStatuses"]
        assert {s["name"]: s["restartCount"] for s in statuses} == {"app": 0, "promptalias-sidecar": 0}
    finally:
        node_bed.kubectl("delete", "namespace", app_ns, "--wait=false", check=False)


def test_helm_uninstall_keeps_the_mlflow_aliases_and_removes_the_pods(
    node_bed: Testbed, node_mlflow: Any, story: dict[str, str]
) -> None:
    from promptalias.testbed.tools import helm

    namespace, release, prompt = story["namespace"], story["release"], story["prompt"]
    before = alias_version(node_mlflow, prompt, "production")
    assert before is not None
    helm(node_bed.kubeconfig).run(
        "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "300s", timeout=400
    )
    wait(lambda: not operator_pods(node_bed, namespace, release), 300, "the operator pods to be gone")
    # deletionPolicy Retain (the default): the alias stays where the operator left it.
    assert alias_version(node_mlflow, prompt, "production") == before
