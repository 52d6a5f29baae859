"""The operator's own Kubernetes client (promptalias.kube) against the testbed's real apiserver."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from promptalias.kube import Kube, KubeError, NotFound
from promptalias.testbed import Testbed
from promptalias.vocabulary import OPERATOR_FIELD_MANAGER

pytestmark = pytest.mark.integration


def _alias(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "promptalias.io/v1alpha1",
        "kind": "PromptAlias",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"prompt": "p", "alias": "a", "version": 1, "registryRef": {"name": "none"}},
    }


@pytest.mark.without_operator
def test_calls_the_operator_makes(testbed: Testbed, crds: Path, namespace: str) -> None:
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(_alias(namespace, "one")))
    testbed.kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=token=s3cr=t")

    async def calls() -> None:
        kube = Kube.from_environment(str(testbed.kubeconfig))
        try:
            got = await kube.get_custom("promptaliases", namespace, "one")
            assert got["spec"]["version"] == 1
            stored = await kube.patch_status(
                "promptaliases", namespace, "one", {"resolvedVersion": 1, "observedGeneration": 1}
            )
            assert stored["status"]["resolvedVersion"] == 1
            assert stored["metadata"]["resourceVersion"] != got["metadata"]["resourceVersion"]
            annotated = await kube.patch_annotations("promptaliases", namespace, "one", {"x.io/y": "z"})
            assert annotated["metadata"]["annotations"]["x.io/y"] == "z"
            removed = await kube.patch_annotations("promptaliases", namespace, "one", {"x.io/y": None})
            assert "x.io/y" not in (removed["metadata"].get("annotations") or {})
            # Many calls at once share the connection pool.
            listed = await asyncio.gather(*(kube.list_custom("promptaliases", namespace) for _ in range(40)))
            assert all([item["metadata"]["name"] for item in got] == ["one"] for got in listed)
            version, data = await kube.read_secret(namespace, "creds")
            assert data == {"token": b"s3cr=t"}
            assert version
            cm = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "proj", "namespace": namespace, "labels": {"k": "v"}},
                "data": {"p.a.json": '{"version": 1}'},
            }
            await kube.apply_configmap(cm)
            await kube.apply_configmap({**cm, "data": {"p.a.json": '{"version": 2}'}})
            (found,) = await kube.list_configmaps(namespace, "k=v")
            assert found["data"] == {"p.a.json": '{"version": 2}'}
            assert any(e["manager"] == OPERATOR_FIELD_MANAGER for e in found["metadata"]["managedFields"])
            labels = await kube.namespace_labels(namespace)
            assert namespace in labels
            assert len(await kube.cluster_uid()) == 36
        finally:
            await kube.aclose()

    asyncio.run(calls())


@pytest.mark.without_operator
def test_errors_name_the_call_and_carry_the_status(testbed: Testbed, crds: Path, namespace: str) -> None:
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(_alias(namespace, "one")))

    async def calls() -> None:
        kube = Kube.from_environment(str(testbed.kubeconfig))
        try:
            with pytest.raises(NotFound, match=f"promptaliases {namespace}/missing: not found"):
                await kube.get_custom("promptaliases", namespace, "missing")
            with pytest.raises(KubeError) as refused:  # the schema refuses a string version
                await kube.patch_status("promptaliases", namespace, "one", {"resolvedVersion": "three"})
            assert refused.value.status == 422
            assert "resolvedVersion" in str(refused.value)
        finally:
            await kube.aclose()
        dead = Kube.from_environment(str(testbed.kubeconfig))
        dead.base_url = "https://127.0.0.1:1"  # nothing listens there
        try:
            with pytest.raises(KubeError, match="cannot reach the apiserver") as unreachable:
                await dead.get_custom("promptaliases", namespace, "one")
            assert unreachable.value.status == 0
        finally:
            await dead.aclose()

    asyncio.run(calls())
