"""The sidecar-injection webhook, served by a real operator, called by the real apiserver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kit import OperatorProcess, wait_for
from promptalias.testbed import Testbed
from promptalias.testbed.ports import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def admission_operator(
    testbed: Testbed, crds: Path, tmp_path: Path, namespace: str
) -> Iterator[OperatorProcess]:
    port = free_port()
    proc = OperatorProcess(
        testbed,
        tmp_path / "operator.log",
        "--namespace",
        namespace,
        env={
            "PROMPTALIAS_ADMISSION_LISTEN": f"127.0.0.1:{port}",
            "PROMPTALIAS_ADMISSION_MANAGED": "true",
            "PROMPTALIAS_SIDECAR_IMAGE": "promptalias:test",
        },
    )
    proc.start()
    try:
        try:
            wait_for(
                lambda: (
                    testbed.kubectl(
                        "get", "mutatingwebhookconfiguration", "promptalias.io", check=False
                    ).returncode
                    == 0
                ),
                30,
                "kopf to register the MutatingWebhookConfiguration",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\noperator log:\n{proc.log_tail()}") from None
        yield proc
    finally:
        proc.stop()
        testbed.kubectl("delete", "mutatingwebhookconfiguration", "promptalias.io", "--ignore-not-found")


def _pod(name: str, annotations: dict[str, str]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 1000,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "app",
                        "image": "app:1",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
    )


def test_annotated_pod_gets_the_sidecar_and_passes_restricted(
    testbed: Testbed, namespace: str, admission_operator: OperatorProcess
) -> None:
    testbed.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    annotations = {"promptalias.io/inject": "true", "promptalias.io/prompts": "promptalias-parser"}

    def created() -> bool:
        # the webhook registration can take a moment to reach the apiserver's admission chain
        result = testbed.kubectl(
            "create", "-n", namespace, "-f", "-", stdin=_pod("web", annotations), check=False
        )
        errors.append(result.stderr)
        return result.returncode == 0

    errors: list[str] = []
    try:
        wait_for(created, 30, "the annotated pod to be admitted")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {errors[-1:]}\n{admission_operator.log_tail()}") from None
    pod = json.loads(testbed.kubectl("get", "pod", "web", "-n", namespace, "-o", "json").stdout)
    init = pod["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["promptalias-sidecar"]
    assert init[0]["restartPolicy"] == "Always"
    assert "--names=promptalias-parser" in init[0]["args"]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["PROMPTALIAS_SIDECAR_URL"] == "http://127.0.0.1:8718"
    assert pod["metadata"]["annotations"]["promptalias.io/injected"] == "true"

    testbed.kubectl("create", "-n", namespace, "-f", "-", stdin=_pod("plain", {}))
    plain = json.loads(testbed.kubectl("get", "pod", "plain", "-n", namespace, "-o", "json").stdout)
    assert "initContainers" not in plain["spec"]


def test_injection_without_prompts_annotation_is_admitted_with_a_warning(
    testbed: Testbed, namespace: str, admission_operator: OperatorProcess
) -> None:
    """Without promptalias.io/prompts the sidecar needs list/watch; kubectl shows why it may hang."""
    results: list[str] = []

    def created() -> bool:
        result = testbed.kubectl(
            "create",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=_pod("unnamed", {"promptalias.io/inject": "true"}),
            check=False,
        )
        results.append(result.stderr)
        return result.returncode == 0

    wait_for(created, 30, "the annotated pod to be admitted")
    pod = json.loads(testbed.kubectl("get", "pod", "unnamed", "-n", namespace, "-o", "json").stdout)
    assert [c["name"] for c in pod["spec"].get("initContainers") or []] == ["promptalias-sidecar"]
    assert "Warning:" in results[-1]
    assert "without promptalias.io/prompts" in results[-1]
