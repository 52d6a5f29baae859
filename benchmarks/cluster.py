"""Kubernetes objects of the benchmark (namespace, registries, PromptAliases), via the kubernetes client."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

GROUP, VERSION = "promptalias.io", "v1alpha1"
ALIASES, REGISTRIES = "promptaliases", "promptregistries"

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 -- kept as the last answer for the error message
            last = exc
        else:
            if value:
                return value
            last = value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class Kube:
    """A kubernetes ApiClient for the testbed admin, with the few calls the benchmark makes."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def close(self) -> None:
        self.api.close()

    def create_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.core.create_namespace(body)

    def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}
        self.core.create_namespaced_secret(namespace, body)

    def create_registry(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PromptRegistry",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, REGISTRIES, body)

    def create_alias(
        self, namespace: str, name: str, registry: str, prompt: str, alias: str, version: int | None
    ) -> None:
        spec: dict[str, Any] = {"registryRef": {"name": registry}, "prompt": prompt, "alias": alias}
        if version is not None:
            spec["version"] = version
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PromptAlias",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ALIASES, body)

    def patch_version(self, namespace: str, name: str, version: int) -> None:
        """The CR change being measured: a merge patch of spec.version."""
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            ALIASES,
            name,
            {"spec": {"version": version}},
            _content_type="application/merge-patch+json",
        )

    def status(self, namespace: str, plural: str, name: str) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        status: dict[str, Any] = obj.get("status") or {}
        return status

    def ready(self, namespace: str, plural: str, name: str) -> bool:
        conditions = self.status(namespace, plural, name).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def wait_registry_ready(self, namespace: str, name: str, timeout: float = 60) -> None:
        wait_until(lambda: self.ready(namespace, REGISTRIES, name), timeout, f"PromptRegistry {name} Ready")

    def projected_version(self, namespace: str, configmap: str) -> int | None:
        from kubernetes.client.exceptions import ApiException

        try:
            cm = self.core.read_namespaced_config_map(configmap, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        for raw in (cm.data or {}).values():
            return int(json.loads(raw)["version"])
        return None

    def wait_alias(self, namespace: str, name: str, version: int, timeout: float = 60) -> None:
        """Ready at `version`, with the projection ConfigMap at that version too."""

        def done() -> bool:
            status = self.status(namespace, ALIASES, name)
            return (
                self.ready(namespace, ALIASES, name)
                and status.get("resolvedVersion") == version
                and self.projected_version(namespace, configmap_name(name)) == version
            )

        wait_until(done, timeout, f"PromptAlias {name} Ready at version {version}", interval=0.2)


def configmap_name(alias_name: str) -> str:
    """The projection ConfigMap of a PromptAlias (docs/contracts.md)."""
    return f"promptalias-{alias_name}"


def mlflow_webhooks(uri: str) -> list[dict[str, Any]]:
    """The webhooks registered in an MLflow server (REST, MLflow >= 3.5)."""
    with urllib.request.urlopen(f"{uri}/api/2.0/mlflow/webhooks?max_results=100", timeout=5) as response:
        webhooks: list[dict[str, Any]] = json.loads(response.read()).get("webhooks", [])
    return webhooks


def webhook_receiver_counts(port: int) -> dict[str, Any]:
    """The operator's MLflow-webhook receiver counters (accepted / ignored / rejected)."""
    url = f"http://127.0.0.1:{port}/mlflow/webhook/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        counts: dict[str, Any] = json.loads(response.read())
    return counts
