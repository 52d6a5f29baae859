"""Thin async client for the parts of the Kubernetes API the operator uses directly.

Requests go out on the operator's own event loop (aiohttp, one keep-alive connection pool), not
through the `kubernetes` package's synchronous client in threads: a status write on the alias path
costs one round trip and no thread hand-off, and the threads no longer compete with the event loop
for the interpreter (docs/benchmarks.md, "Where the propagation time goes"). The `kubernetes`
package still loads the credentials (kubeconfig, or the pod's ServiceAccount with its token
refresh), so every way of logging in that it supports works here too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from kubernetes import client, config

from promptalias.api.types import API_VERSION, GROUP
from promptalias.vocabulary import OPERATOR_FIELD_MANAGER

VERSION = API_VERSION.split("/", 1)[1]
_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Every call has a deadline: (connect, read) seconds. A hung apiserver connection must fail the
# pass (which retries with backoff), never hold a worker for ever.
REQUEST_TIMEOUT: Final = (5.0, 30.0)
# Connections kept to the apiserver: the queue workers and kopf's handlers call concurrently.
POOL_SIZE: Final = 16
MERGE_PATCH: Final = "application/merge-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"  # JSON is YAML: the body is sent as JSON
RETRIES: Final = 4  # attempts per call when the apiserver asks to retry, or cannot be connected to
MAX_RETRY_AFTER_S: Final = 5.0
CORE: Final = ""  # the core API group (Secrets, ConfigMaps, Namespaces)


class KubeError(RuntimeError):
    """The Kubernetes API refused or failed a request; `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):  # noqa: N818 - mirrors the API's own reason
    """The object does not exist."""


def load_configuration(kubeconfig: str | None = None) -> client.Configuration:
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
    return configuration


def ssl_context(configuration: client.Configuration) -> ssl.SSLContext | bool:
    """TLS as the kubeconfig (or ServiceAccount) asks: its CA, client certificate, or no checks."""
    if not configuration.host.startswith("https://"):
        return True  # plain HTTP: aiohttp ignores it
    if not configuration.verify_ssl:
        return False
    context = ssl.create_default_context(
        cafile=configuration.ssl_ca_cert or None, cadata=configuration.ca_cert_data or None
    )
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    if configuration.assert_hostname is False:
        context.check_hostname = False
    return context


def _proxy_for(configuration: client.Configuration) -> str | None:
    proxy: str | None = getattr(configuration, "proxy", None)
    if not proxy:
        return None
    host = urlsplit(configuration.host).hostname or ""
    for raw in (configuration.no_proxy or "").split(","):
        entry = raw.strip().lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return None
    return proxy


def _api_path(plural: str, namespace: str | None, name: str | None = None, *, group: str = GROUP) -> str:
    """The path of a collection or object: core ("" group, /api/v1), ours, or kopf's (v1)."""
    path = "/api/v1" if group == CORE else f"/apis/{group}/{VERSION if group == GROUP else 'v1'}"
    if namespace is not None:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    return path


class Kube:
    """Secrets (read), projection ConfigMaps (server-side apply), custom-resource status (patch)."""

    def __init__(self, configuration: client.Configuration) -> None:
        self.configuration = configuration
        self.base_url = configuration.host.rstrip("/")
        self._ssl = ssl_context(configuration)
        self._proxy = _proxy_for(configuration)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> Kube:
        return cls(load_configuration(kubeconfig))

    def _session_for_running_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed:
            connect, read = REQUEST_TIMEOUT
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=POOL_SIZE, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read),
                headers={"Accept": "application/json", "User-Agent": "promptalias-operator"},
            )
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("this Kube client is bound to another event loop; create one per loop")
        return self._session

    def _auth_headers(self) -> dict[str, str]:
        """The credentials' headers, asked for on every request: a ServiceAccount token that the
        kubelet rotated is re-read by the configuration's refresh hook."""
        return {
            setting["key"]: setting["value"]
            for setting in self.configuration.auth_settings().values()
            if setting.get("in") == "header" and setting.get("value")
        }

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call; the decoded JSON answer. Every failure is a KubeError naming `what`."""
        session = self._session_for_running_loop()
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        headers = self._auth_headers()
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body, separators=(",", ":")).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with session.request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    proxy=self._proxy,
                    server_hostname=self.configuration.tls_server_name or None,
                ) as response:
                    raw = await response.read()
                    status = response.status
                    reason = response.reason or "error"
                    retry_after = response.headers.get("Retry-After")
            except TimeoutError:
                raise KubeError(f"{what}: the apiserver did not answer in time") from None
            except aiohttp.ClientError as exc:
                # Not connected, or a kept-alive connection the server had closed: every call made
                # here may be repeated (merge patches and applies set the same fields again; a
                # create answers 409), as the kubernetes client's urllib3 retried them.
                retryable = isinstance(exc, aiohttp.ClientOSError | aiohttp.ServerDisconnectedError)
                if retryable and attempt < RETRIES:
                    await asyncio.sleep(0.1 * attempt)
                    continue
                raise KubeError(f"{what}: cannot reach the apiserver ({type(exc).__name__}: {exc})") from None
            # The apiserver asks to come back (429 while a new CRD's storage starts, 503 under load):
            # honour Retry-After a few times, as the kubernetes client's urllib3 did.
            if status in (429, 503) and retry_after is not None and attempt < RETRIES:
                await asyncio.sleep(_retry_after_s(retry_after))
                continue
            break
        if status == 404:
            raise NotFound(f"{what}: not found", status)
        if not 200 <= status < 300:
            raise KubeError(f"{what}: {status} {reason}{_api_message(raw)}", status)
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise KubeError(f"{what}: the apiserver answered with invalid JSON", status) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def read_secret(self, namespace: str, name: str) -> tuple[str, dict[str, bytes]]:
        """(resourceVersion, decoded data) of a Secret. Values are never logged by this layer."""
        secret = await self._request(
            "GET",
            _api_path("secrets", namespace, name, group=CORE),
            what=f"Secret {namespace}/{name}",
        )
        data = {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
        return str(secret.get("metadata", {}).get("resourceVersion")), data

    async def apply_configmap(self, body: Mapping[str, Any]) -> None:
        """Server-side apply, forcing ownership of the fields we manage."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        await self._request(
            "PATCH",
            _api_path("configmaps", namespace, name, group=CORE),
            what=f"apply ConfigMap {namespace}/{name}",
            query={"fieldManager": OPERATOR_FIELD_MANAGER, "force": "true"},
            body=body,
            content_type=APPLY_PATCH,
        )

    async def list_configmaps(self, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        """ConfigMaps matching `label_selector` (in one namespace, or all), as plain dicts."""
        path = _api_path("configmaps", namespace, group=CORE)
        return await self._list(path, f"list ConfigMaps {label_selector}", {"labelSelector": label_selector})

    async def _list(self, path: str, what: str, query: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every item of a list call, following `continue` tokens."""
        items: list[dict[str, Any]] = []
        query = dict(query or {})
        while True:
            got = await self._request("GET", path, what=what, query=query)
            items.extend(got.get("items") or [])
            token = (got.get("metadata") or {}).get("continue")
            if not token:
                return items
            query["continue"] = token

    async def get_custom(self, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "GET", _api_path(plural, namespace, name), what=f"{plural} {namespace}/{name}"
        )
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
        path = _api_path(plural, namespace, name) + ("/status" if status else "")
        result: dict[str, Any] = await self._request(
            "PATCH",
            path,
            what=f"{what} {plural} {namespace}/{name}",
            query={"fieldManager": field_manager},
            body=body,
            content_type=MERGE_PATCH,
        )
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
        return await self._list(_api_path(plural, namespace), f"list {plural}")

    async def namespace_labels(self, name: str | None = None) -> dict[str, dict[str, str]]:
        """Labels of one namespace, or of all namespaces when `name` is None."""
        if name is None:
            found = await self._list(_api_path("namespaces", None, group=CORE), "namespaces")
        else:
            found = [
                await self._request("GET", _api_path("namespaces", None, name, group=CORE), what="namespaces")
            ]
        return {str(ns["metadata"]["name"]): dict(ns["metadata"].get("labels") or {}) for ns in found}

    async def ensure_peering(self, name: str, namespace: str | None) -> bool:
        """Create kopf's (Cluster)KopfPeering object if absent; True when it exists afterwards."""
        kind, plural = (
            ("KopfPeering", "kopfpeerings") if namespace else ("ClusterKopfPeering", "clusterkopfpeerings")
        )
        body = {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": name}}
        try:
            path = _api_path(plural, namespace, group="kopf.dev")
            await self._request("POST", path, what=f"create {kind} {name}", body=body)
        except KubeError as exc:
            if exc.status == 409:
                return True
            raise
        return True

    async def cluster_uid(self) -> str:
        """A stable id of this cluster: the uid of the kube-system namespace."""
        path = _api_path("namespaces", None, "kube-system", group=CORE)
        ns = await self._request("GET", path, what="namespace kube-system")
        return str(ns["metadata"]["uid"])


def _retry_after_s(value: str) -> float:
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return 1.0


def _api_message(raw: bytes) -> str:
    """The apiserver's own explanation (a Status object's message), if it sent one."""
    try:
        message = json.loads(raw).get("message")
    except (ValueError, AttributeError):
        return ""
    return f": {message}" if message else ""
