"""Smoke tests proving the testbed is a real control plane and a real MLflow server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from promptalias.testbed import K8S_VERSION, Testbed
from promptalias.testbed.procs import pid_alive

pytestmark = pytest.mark.integration


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_server_reports_its_real_version(testbed: Testbed) -> None:
    out = json.loads(testbed.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == K8S_VERSION
    assert out["clientVersion"]["gitVersion"] == K8S_VERSION


def test_crd_and_custom_resource_can_be_watched(k8s_api: Any, namespace: str) -> None:
    group = "smoke.promptalias.io"
    plural = f"widgets{uuid.uuid4().hex[:6]}"
    ext = client.ApiextensionsV1Api(k8s_api)
    kind = f"W{plural[1:]}"
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                            },
                        }
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)
    try:

        def established() -> bool:
            got = ext.read_custom_resource_definition(f"{plural}.{group}")
            return any(c.type == "Established" and c.status == "True" for c in got.status.conditions or [])

        _wait(established, 30, "the CRD to be Established")
        custom = client.CustomObjectsApi(k8s_api)
        listing = custom.list_namespaced_custom_object(group, "v1", namespace, plural)
        body = {
            "apiVersion": f"{group}/v1",
            "kind": kind,
            "metadata": {"name": "one"},
        }
        body["spec"] = {"size": 3}
        custom.create_namespaced_custom_object(group, "v1", namespace, plural, body)
        seen = []
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            group,
            "v1",
            namespace,
            plural,
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=10,
        )
        for event in stream:
            seen.append((event["type"], event["object"]["metadata"]["name"], event["object"]["spec"]["size"]))
            break
        assert seen == [("ADDED", "one", 3)]
    finally:
        ext.delete_custom_resource_definition(f"{plural}.{group}")


def test_unprivileged_token_is_denied_by_rbac(testbed: Testbed, k8s_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata={"name": "nobody"}))
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    ).status.token
    cfg = client.Configuration()
    cfg.host = k8s_api.configuration.host
    cfg.ssl_ca_cert = k8s_api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(cfg) as unprivileged:
        who = client.AuthenticationV1Api(unprivileged).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        assert who.status.user_info.username == f"system:serviceaccount:{namespace}:nobody"
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(unprivileged).list_namespaced_config_map(namespace)
        assert denied.value.status == 403
        assert "cannot list resource" in denied.value.body


def test_deleted_namespace_really_goes_away(k8s_api: Any) -> None:
    core = client.CoreV1Api(k8s_api)
    name = f"t-gone-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, client.V1ConfigMap(metadata={"name": "content"}, data={"a": "b"}))
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    _wait(gone, 60, f"namespace {name} to be finalized by the controller manager")


def test_owned_configmap_is_garbage_collected(k8s_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s_api)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata={"name": "owner"}))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owned", owner_references=[ref]))
    )
    core.delete_namespaced_config_map("owner", namespace)

    def collected() -> bool:
        try:
            core.read_namespaced_config_map("owned", namespace)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    _wait(collected, 30, "the garbage collector to delete the owned ConfigMap")


def test_podsecurity_restricted_rejects_a_privileged_pod(k8s_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s_api)
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]},
    }
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, pod)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "privileged" in message


def test_mlflow_registers_a_prompt_and_moves_an_alias_over_http(
    testbed: Testbed, mlflow_client: Any, prompt_name: str
) -> None:
    import mlflow.genai

    for text in ("v1 {{x}}", "v2 {{x}}"):
        mlflow.genai.register_prompt(name=prompt_name, template=text)
    request = urllib.request.Request(
        f"{testbed.mlflow_uri}/api/2.0/mlflow/registered-models/alias",
        data=json.dumps({"name": prompt_name, "alias": "production", "version": "2"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(
        f"{testbed.mlflow_uri}/api/2.0/mlflow/registered-models/get?name={prompt_name}", timeout=5
    ) as response:
        model = json.loads(response.read())["registered_model"]
    assert {a["alias"]: a["version"] for a in model["aliases"]} == {"production": "2"}
    assert mlflow_client.get_prompt_version_by_alias(prompt_name, "production").template == "v2 {{x}}"


def test_mlflow_basic_auth_refuses_anonymous_writes(basic_auth_mlflow: Any) -> None:
    url = f"{basic_auth_mlflow.uri}/api/2.0/mlflow/registered-models/search"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 401


def test_a_killed_session_leaves_no_servers_behind(tmp_path: Any) -> None:
    """SIGKILL a process that owns a testbed: its servers must die with it (PR_SET_PDEATHSIG)."""
    script = textwrap.dedent(
        """
        import json, sys, time
        from promptalias.testbed import Testbed
        bed = Testbed.start()
        pids = [s.pid for s in bed.controlplane.servers] + [bed.mlflow.server.pid]
        print(json.dumps(pids), flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=os.environ,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        pids = json.loads(line)
        assert len(pids) == 4
        assert all(pid_alive(pid) for pid in pids)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _wait(lambda: not any(pid_alive(pid) for pid in pids), 30, "the orphaned servers to exit")
