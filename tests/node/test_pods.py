"""The product as pods on a real node: `helm install`, the operator pod, an injected app pod.

Every wait is on a positive marker (Ready conditions, status.observedGeneration, the MLflow
alias, the app's answer); timeouts are generous because the machine is shared and loaded.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kit import wait_for
from promptalias.testbed import Testbed
from promptalias.testbed.tools import Helm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

CHART = Path(__file__).resolve().parents[2] / "charts" / "promptalias"
APP_IMAGE = "localhost/promptalias/invoice-app:latest"
OPERATOR_IMAGE = "ghcr.io/promptalias/promptalias:0.1.0"  # the chart's default, imported by the testbed
PA = "invoice-parser-production"
SIDECAR = "promptalias-sidecar"


def wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """`kit.wait_for` at a node's pace: each poll runs kubectl, so once a second by default."""
    return wait_for(predicate, timeout, what, interval)


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
spec: {{trackingUri: "{bed.mlflow_cluster_uri}", refreshInterval: 5s}}
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


def projected_version(bed: Testbed, namespace: str) -> int | None:
    """The version in the projection ConfigMap's document (what sidecars and mounted files serve)."""
    result = bed.kubectl("get", "configmap", "-n", namespace, f"promptalias-{PA}", "-o", "json", check=False)
    if result.returncode != 0:
        return None
    (document,) = json.loads(result.stdout)["data"].values()
    return int(json.loads(document)["version"])


def _lands(
    bed: Testbed, client: Any, namespace: str, prompt: str, version: int, timeout: float = 300
) -> None:
    wait(
        lambda: (
            alias_version(client, prompt, "production") == version
            and is_ready(alias_status(bed, namespace, PA))
            and projected_version(bed, namespace) == version
        ),
        timeout,
        f"MLflow {prompt}@production == {version}, the PromptAlias Ready for its generation and the "
        "projection at that version",
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


def _exec_python(bed: Testbed, namespace: str, pod: str, container: str, code: str) -> str:
    return bed.kubectl("exec", "-n", namespace, pod, "-c", container, "--", "python", "-c", code).stdout


def test_pods_resolve_service_names_through_the_cluster_dns(
    node_bed: Testbed, node_mlflow: Any, story: dict[str, str]
) -> None:
    """CoreDNS (kube-dns 10.0.0.10) answers Service names inside pods and nothing outside the cluster."""
    namespace, release = story["namespace"], story["release"]
    pod = wait(
        lambda: [p for p in operator_pods(node_bed, namespace, release) if ready(p)], 600, "a Ready operator"
    )
    name = pod[0]["metadata"]["name"]
    assert pod[0]["spec"]["dnsPolicy"] == "ClusterFirst"
    code = """
import json, socket, urllib.request
out = {"resolv": open("/etc/resolv.conf").read()}
for name in ("kubernetes.default.svc.cluster.local", "mlflow.mlflow.svc", "kube-dns.kube-system"):
    out[name] = socket.gethostbyname(name)
out["health"] = urllib.request.urlopen("http://mlflow.mlflow.svc:5000/health", timeout=20).read().decode()
try:
    out["outside"] = socket.gethostbyname("promptalias-test.invalid")
except OSError as exc:
    out["outside"] = type(exc).__name__
print(json.dumps(out))
"""
    out = json.loads(_exec_python(node_bed, namespace, name, "operator", code))
    assert "nameserver 10.0.0.10" in out["resolv"]
    assert f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local" in out["resolv"]
    assert out["kubernetes.default.svc.cluster.local"] == "10.0.0.1"
    assert out["kube-dns.kube-system"] == "10.0.0.10"
    mlflow_ip = kget(node_bed, "service", "-n", "mlflow", "mlflow")["spec"]["clusterIP"]
    assert out["mlflow.mlflow.svc"] == mlflow_ip
    assert out["health"] == "OK"  # MLflow reached by name: CoreDNS, then kube-proxy to the node IP
    assert out["outside"] == "gaierror"  # no forward plugin: names outside the cluster never resolve


def _sidecar_restarts(bed: Testbed, namespace: str) -> int:
    pod = kget(bed, "pod", "-n", namespace, "invoice-app")
    statuses = pod["status"].get("initContainerStatuses") or []
    return int(next(s["restartCount"] for s in statuses if s["name"] == SIDECAR))


def _container(bed: Testbed, namespace: str, name: str) -> dict[str, Any]:
    pod = kget(bed, "pod", "-n", namespace, "invoice-app")
    statuses = pod["status"]["containerStatuses"] + (pod["status"].get("initContainerStatuses") or [])
    status: dict[str, Any] = next(s for s in statuses if s["name"] == name)
    return status


@pytest.fixture(scope="module")
def app(node_bed: Testbed, node_mlflow: Any, story: dict[str, str]) -> Iterator[dict[str, str]]:
    """The webhook and per-app sidecar RBAC enabled by `helm upgrade`; the invoice app pod at v2."""
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
                    "promptAliases": [PA],
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
        assert sidecars == [SIDECAR], "the admission webhook injected the native sidecar"
        wait(lambda: ready(kget(node_bed, "pod", "-n", app_ns, "invoice-app")), 600, "the app pod Ready")
        yield {"namespace": app_ns, "prompt": prompt}
    finally:
        node_bed.kubectl("delete", "namespace", app_ns, "--wait=false", check=False)


def test_injected_app_pod_in_a_restricted_namespace_follows_flips_without_restart(
    node_bed: Testbed, node_mlflow: Any, app: dict[str, str]
) -> None:
    app_ns, prompt = app["namespace"], app["prompt"]
    assert _app_version(node_bed, app_ns) == 2
    for version in (3, 2):
        _set_version(node_bed, app_ns, version)
        _lands(node_bed, node_mlflow, app_ns, prompt, version)
        wait(functools.partial(_serves, node_bed, app_ns, version), 300, f"the app to serve v{version}")
    pod = kget(node_bed, "pod", "-n", app_ns, "invoice-app")
    statuses = pod["status"]["containerStatuses"] + pod["status"]["initContainerStatuses"]
    assert {s["name"]: s["restartCount"] for s in statuses} == {"app": 0, SIDECAR: 0}


def _liveness_failures(bed: Testbed, namespace: str) -> list[str]:
    events = kget(bed, "events", "-n", namespace, "--field-selector", "involvedObject.name=invoice-app")
    return [
        e["message"]
        for e in events["items"]
        if e["reason"] == "Unhealthy"
        and "Liveness probe failed" in e["message"]
        and SIDECAR in (e["involvedObject"].get("fieldPath") or "")
    ]


def test_sidecar_liveness_probe_restarts_it_when_its_watch_is_cut_and_the_app_keeps_serving(
    node_bed: Testbed, node_mlflow: Any, app: dict[str, str]
) -> None:
    """Revoke the sidecar's RBAC: its watch fails, /healthz (the real liveness probe) turns 503 after
    --stale-after (120 s), the kubelet restarts the sidecar container; the app, reading the files the
    sidecar left in the pod's volume, serves the last good prompt throughout. Restored RBAC: it recovers."""
    app_ns, prompt = app["namespace"], app["prompt"]
    serving = _app_version(node_bed, app_ns)
    before = _sidecar_restarts(node_bed, app_ns)
    (binding,) = kget(
        node_bed, "rolebinding", "-n", app_ns, "-l", "app.kubernetes.io/component=sidecar-rbac"
    )["items"]
    saved = {
        "apiVersion": binding["apiVersion"],
        "kind": binding["kind"],
        "metadata": {
            k: binding["metadata"][k]
            for k in ("name", "namespace", "labels", "annotations")
            if k in binding["metadata"]
        },
        "roleRef": binding["roleRef"],
        "subjects": binding["subjects"],
    }
    node_bed.kubectl("delete", "rolebinding", "-n", app_ns, binding["metadata"]["name"])
    try:
        # the open watch ends within --watch-timeout (60 s); every relist is then Forbidden
        wait(
            lambda: _sidecar_restarts(node_bed, app_ns) > before, 900, "the kubelet to restart the sidecar", 2
        )
        assert _liveness_failures(node_bed, app_ns), "the restart came from the liveness probe"
        assert _container(node_bed, app_ns, "app")["restartCount"] == 0
        assert _app_version(node_bed, app_ns) == serving  # the last good prompt, with the sidecar down
    finally:
        node_bed.kubectl("apply", "-f", "-", stdin=json.dumps(saved))
    wait(
        lambda: _container(node_bed, app_ns, SIDECAR).get("ready") is True, 900, "the sidecar Ready again", 2
    )
    target = 3 if serving == 2 else 2
    _set_version(node_bed, app_ns, target)
    _lands(node_bed, node_mlflow, app_ns, prompt, target)
    wait(
        functools.partial(_serves, node_bed, app_ns, target), 300, f"the recovered sidecar to bring v{target}"
    )
    assert _container(node_bed, app_ns, "app")["restartCount"] == 0


def test_helm_upgrade_to_a_new_image_tag_rolls_the_operator_without_losing_a_move(
    node_bed: Testbed, node_mlflow: Any, story: dict[str, str]
) -> None:
    from promptalias.testbed.tools import helm

    namespace, release, prompt = story["namespace"], story["release"], story["prompt"]
    assert node_bed.node is not None
    tag = "0.1.0-rolled"
    # The imported image under a second tag (no rebuild); pullPolicy Never: nothing is ever pulled.
    node_bed.node.ctr("images", "tag", "--force", OPERATOR_IMAGE, f"{OPERATOR_IMAGE.rsplit(':', 1)[0]}:{tag}")
    old = {p["metadata"]["uid"] for p in operator_pods(node_bed, namespace, release)}
    current = alias_version(node_mlflow, prompt, "production")
    during, after = (3, 2) if current == 2 else (2, 3)
    helm(node_bed.kubeconfig).run(
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--reuse-values",
        "--set",
        f"image.tag={tag},image.pullPolicy=Never",
        timeout=300,
    )  # returns once the new Deployment is applied: the roll is under way
    _set_version(node_bed, namespace, during)

    def rolled() -> bool:
        pods = operator_pods(node_bed, namespace, release)
        return (
            len(pods) == 2
            and all(map(ready, pods))
            and not {p["metadata"]["uid"] for p in pods} & old
            and all(p["spec"]["containers"][0]["image"].endswith(f":{tag}") for p in pods)
        )

    wait(rolled, 900, f"both operator pods replaced by Ready pods running :{tag}", 2)
    _lands(node_bed, node_mlflow, namespace, prompt, during)  # the move made during the roll
    _set_version(node_bed, namespace, after)
    _lands(node_bed, node_mlflow, namespace, prompt, after)  # and one after it


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
