"""Thin async wrapper over the parts of the Kubernetes API the operator uses directly."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from promptalias.api.types import API_VERSION, GROUP
from promptalias.vocabulary import OPERATOR_FIELD_MANAGER

VERSION = API_VERSION.split("/", 1)[1]
_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(RuntimeError):
    """The Kubernetes API refused or failed a request; `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):  # noqa: N818 - mirrors the API's own reason
    """The object does not exist."""


def _error(exc: ApiException, what: str) -> KubeError:
    status = int(exc.status or 0)
    reason = exc.reason or "error"
    if status == 404:
        return NotFound(f"{what}: not found", status)
    return KubeError(f"{what}: {status} {reason}", status)


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else KUBECONFIG (or ~/.kube/config)."""
    if (
        kubeconfig is None
        and (_SERVICE_ACCOUNT_DIR / "token").exists()
        and os.environ.get("KUBERNETES_SERVICE_HOST")
    ):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"))


class Kube:
    """Secrets (read), projection ConfigMaps (server-side apply), custom-resource status (patch)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> Kube:
        return cls(load_api_client(kubeconfig))

    def close(self) -> None:
        self.api_client.close()

    async def read_secret(self, namespace: str, name: str) -> tuple[str, dict[str, bytes]]:
        """(resourceVersion, decoded data) of a Secret. Values are never logged by this layer."""
        import base64

        try:
            secret = await asyncio.to_thread(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            raise _error(exc, f"Secret {namespace}/{name}") from None
        data = {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}
        return str(secret.metadata.resource_version), data

    async def apply_configmap(self, body: Mapping[str, Any]) -> None:
        """Server-side apply, forcing ownership of the fields we manage."""
        meta = body["metadata"]
        try:
            await asyncio.to_thread(
                self.core.patch_namespaced_config_map,
                meta["name"],
                meta["namespace"],
                dict(body),
                field_manager=OPERATOR_FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as exc:
            raise _error(exc, f"apply ConfigMap {meta['namespace']}/{meta['name']}") from None

    async def read_configmap_annotations(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            cm = await asyncio.to_thread(self.core.read_namespaced_config_map, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _error(exc, f"ConfigMap {namespace}/{name}") from None
        return dict(cm.metadata.annotations or {})

    async def get_custom(self, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        try:
            if namespace is None:
                got = await asyncio.to_thread(
                    self.custom.get_cluster_custom_object, GROUP, VERSION, plural, name
                )
            else:
                got = await asyncio.to_thread(
                    self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
                )
        except ApiException as exc:
            raise _error(exc, f"{plural} {namespace}/{name}") from None
        result: dict[str, Any] = got
        return result

    async def patch_status(
        self, plural: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None:
        """Merge-patch `.status` (lists such as conditions and history are replaced whole)."""
        body = {"status": dict(status)}
        try:
            if namespace is None:
                await asyncio.to_thread(
                    self.custom.patch_cluster_custom_object_status,
                    GROUP,
                    VERSION,
                    plural,
                    name,
                    body,
                    _content_type="application/merge-patch+json",
                )
            else:
                await asyncio.to_thread(
                    self.custom.patch_namespaced_custom_object_status,
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                    body,
                    _content_type="application/merge-patch+json",
                )
        except ApiException as exc:
            raise _error(exc, f"status of {plural} {namespace}/{name}") from None

    async def patch_annotations(
        self, plural: str, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Set (or, with None, remove) annotations of a namespaced custom object."""
        body = {"metadata": {"annotations": dict(annotations)}}
        try:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                body,
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            raise _error(exc, f"annotate {plural} {namespace}/{name}") from None

    async def list_custom(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object of a kind (in one namespace, or cluster-wide when `namespace` is None)."""
        try:
            if namespace is None:
                got = await asyncio.to_thread(self.custom.list_cluster_custom_object, GROUP, VERSION, plural)
            else:
                got = await asyncio.to_thread(
                    self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural
                )
        except ApiException as exc:
            raise _error(exc, f"list {plural}") from None
        items: list[dict[str, Any]] = got.get("items", [])
        return items

    async def namespace_labels(self, name: str | None = None) -> dict[str, dict[str, str]]:
        """Labels of one namespace, or of all namespaces when `name` is None."""
        try:
            if name is None:
                found = (await asyncio.to_thread(self.core.list_namespace)).items
            else:
                found = [await asyncio.to_thread(self.core.read_namespace, name)]
        except ApiException as exc:
            raise _error(exc, "namespaces") from None
        return {str(ns.metadata.name): dict(ns.metadata.labels or {}) for ns in found}

    async def ensure_peering(self, name: str, namespace: str | None) -> bool:
        """Create kopf's (Cluster)KopfPeering object if absent; True when it exists afterwards."""
        kind, plural = (
            ("KopfPeering", "kopfpeerings") if namespace else ("ClusterKopfPeering", "clusterkopfpeerings")
        )
        body = {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": name}}
        try:
            if namespace:
                await asyncio.to_thread(
                    self.custom.create_namespaced_custom_object, "kopf.dev", "v1", namespace, plural, body
                )
            else:
                await asyncio.to_thread(
                    self.custom.create_cluster_custom_object, "kopf.dev", "v1", plural, body
                )
        except ApiException as exc:
            if exc.status == 409:
                return True
            raise _error(exc, f"create {kind} {name}") from None
        return True

    async def cluster_uid(self) -> str:
        """A stable id of this cluster: the uid of the kube-system namespace."""
        try:
            ns = await asyncio.to_thread(self.core.read_namespace, "kube-system")
        except ApiException as exc:
            raise _error(exc, "namespace kube-system") from None
        return str(ns.metadata.uid)
