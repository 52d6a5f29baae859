"""Thin async wrapper over the parts of the Kubernetes API the operator uses directly."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from promptalias.api.types import API_VERSION, GROUP
from promptalias.vocabulary import OPERATOR_FIELD_MANAGER

VERSION = API_VERSION.split("/", 1)[1]
_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Every call has a deadline: (connect, read) seconds. A hung apiserver connection must fail the
# pass (which retries with backoff), never hold a worker for ever.
REQUEST_TIMEOUT: Final = (5.0, 30.0)
# Calls run in threads of their own pool (not asyncio's default one, which other code shares), as
# many as the HTTP connection pool holds: the queue workers and kopf's handlers call concurrently.
POOL_SIZE: Final = 16
T = TypeVar("T")


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
    configuration = client.Configuration()
    if (
        kubeconfig is None
        and (_SERVICE_ACCOUNT_DIR / "token").exists()
        and os.environ.get("KUBERNETES_SERVICE_HOST")
    ):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=kubeconfig or os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    configuration.connection_pool_maxsize = POOL_SIZE
    return client.ApiClient(configuration)


class Kube:
    """Secrets (read), projection ConfigMaps (server-side apply), custom-resource status (patch)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="kube")

    async def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one client call in the pool, with the request deadline."""
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(method, *args, **kwargs))

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> Kube:
        return cls(load_api_client(kubeconfig))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()

    async def read_secret(self, namespace: str, name: str) -> tuple[str, dict[str, bytes]]:
        """(resourceVersion, decoded data) of a Secret. Values are never logged by this layer."""
        import base64

        try:
            secret = await self._call(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            raise _error(exc, f"Secret {namespace}/{name}") from None
        data = {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}
        return str(secret.metadata.resource_version), data

    async def apply_configmap(self, body: Mapping[str, Any]) -> None:
        """Server-side apply, forcing ownership of the fields we manage."""
        meta = body["metadata"]
        try:
            await self._call(
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

    async def list_configmaps(self, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        """ConfigMaps matching `label_selector` (in one namespace, or all), as plain dicts."""
        try:
            if namespace is None:
                got = await self._call(
                    self.core.list_config_map_for_all_namespaces,
                    label_selector=label_selector,
                    _preload_content=False,
                )
            else:
                got = await self._call(
                    self.core.list_namespaced_config_map,
                    namespace,
                    label_selector=label_selector,
                    _preload_content=False,
                )
        except ApiException as exc:
            raise _error(exc, f"list ConfigMaps {label_selector}") from None
        items: list[dict[str, Any]] = json.loads(got.data).get("items") or []
        return items

    async def get_custom(self, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        try:
            if namespace is None:
                got = await self._call(self.custom.get_cluster_custom_object, GROUP, VERSION, plural, name)
            else:
                got = await self._call(
                    self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
                )
        except ApiException as exc:
            raise _error(exc, f"{plural} {namespace}/{name}") from None
        result: dict[str, Any] = got
        return result

    async def patch_custom(
        self, plural: str, namespace: str, name: str, body: Mapping[str, Any], *, field_manager: str
    ) -> dict[str, Any]:
        """A JSON merge patch of a namespaced custom object under `field_manager` (the name its
        managedFields and so its history's actor show); the object after it."""
        return await self._merge_patch(
            plural, namespace, name, body, status=False, what="patch", field_manager=field_manager
        )

    async def _merge_patch(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        status: bool,
        what: str,
        field_manager: str = OPERATOR_FIELD_MANAGER,
    ) -> dict[str, Any]:
        """A JSON merge patch of a custom object (or its status subresource); the object after it."""
        if namespace is None:
            method = (
                self.custom.patch_cluster_custom_object_status
                if status
                else self.custom.patch_cluster_custom_object
            )
            args: tuple[Any, ...] = (GROUP, VERSION, plural, name, dict(body))
        else:
            method = (
                self.custom.patch_namespaced_custom_object_status
                if status
                else self.custom.patch_namespaced_custom_object
            )
            args = (GROUP, VERSION, namespace, plural, name, dict(body))
        try:
            got = await self._call(
                method,
                *args,
                field_manager=field_manager,
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            raise _error(exc, f"{what} {plural} {namespace}/{name}") from None
        result: dict[str, Any] = got
        return result

    async def patch_status(
        self, plural: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch `.status` (lists such as conditions and history are replaced whole); returns
        the object as the apiserver stored it (its new resourceVersion included)."""
        return await self._merge_patch(
            plural, namespace, name, {"status": dict(status)}, status=True, what="status of"
        )

    async def patch_annotations(
        self, plural: str, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> dict[str, Any]:
        """Set (or, with None, remove) annotations of a namespaced custom object; the object after."""
        body = {"metadata": {"annotations": dict(annotations)}}
        return await self._merge_patch(plural, namespace, name, body, status=False, what="annotate")

    async def list_custom(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object of a kind (in one namespace, or cluster-wide when `namespace` is None)."""
        try:
            if namespace is None:
                got = await self._call(self.custom.list_cluster_custom_object, GROUP, VERSION, plural)
            else:
                got = await self._call(
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
                found = (await self._call(self.core.list_namespace)).items
            else:
                found = [await self._call(self.core.read_namespace, name)]
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
                await self._call(
                    self.custom.create_namespaced_custom_object, "kopf.dev", "v1", namespace, plural, body
                )
            else:
                await self._call(self.custom.create_cluster_custom_object, "kopf.dev", "v1", plural, body)
        except ApiException as exc:
            if exc.status == 409:
                return True
            raise _error(exc, f"create {kind} {name}") from None
        return True

    async def cluster_uid(self) -> str:
        """A stable id of this cluster: the uid of the kube-system namespace."""
        try:
            ns = await self._call(self.core.read_namespace, "kube-system")
        except ApiException as exc:
            raise _error(exc, "namespace kube-system") from None
        return str(ns.metadata.uid)
