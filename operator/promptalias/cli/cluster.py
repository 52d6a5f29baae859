"""The CLI's access to the user's cluster: a `Cluster` Protocol and its kubeconfig implementation.

Commands take a `Cluster`, so unit tests pass a fake that answers from dicts; `KubeCluster` is the
one class that talks to the Kubernetes API (with the user's kubeconfig and RBAC, never the
operator's) and turns every failure into a `CliError` that says what went wrong and what to do.
The kubernetes package is imported only when a `KubeCluster` is made, so `--help` and the pure
commands stay fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, Protocol

from promptalias.cli.errors import CliError
from promptalias.cli.formatting import dig
from promptalias.reconcile.timestamps import parse_timestamp
from promptalias.vocabulary import CLI_FIELD_MANAGER, GROUP, VERSION

ALIASES: Final = "promptaliases"
EXPERIMENTS: Final = "promptexperiments"
REGISTRIES: Final = "promptregistries"
CLUSTER_REGISTRIES: Final = "clusterpromptregistries"
REQUEST_TIMEOUT: Final = (5, 30)  # connect, read (s); no hidden retries either
_KINDS: Final = {ALIASES: "PromptAlias", EXPERIMENTS: "PromptExperiment", REGISTRIES: "PromptRegistry"}


class Cluster(Protocol):
    """What the commands need from a cluster. Reads return objects as the apiserver sends them."""

    @property
    def default_namespace(self) -> str:
        """The namespace of the kubeconfig context, else "default"."""
        ...

    def list_aliases(self, namespace: str | None) -> list[dict[str, Any]]:
        """PromptAliases in `namespace`, or in all namespaces when None."""
        ...

    def get_alias(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch_alias(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (a None value removes a key), as field manager kubectl-promptalias."""
        ...

    def list_experiments(self, namespace: str) -> list[dict[str, Any]]: ...

    def get_experiment(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch_experiment(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...

    def get_registry(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """A PromptRegistry in `namespace`, or (kind "ClusterPromptRegistry") a cluster-wide one."""
        ...

    def latest_warning(self, namespace: str, name: str, since: datetime) -> str | None:
        """`reason: message` of the newest Warning Event about the PromptAlias since `since`."""
        ...

    def close(self) -> None: ...


def connect(kubeconfig: str | None, context: str | None) -> Cluster:
    """The user's cluster through their kubeconfig (default: $KUBECONFIG, then ~/.kube/config)."""
    return KubeCluster(kubeconfig, context)


def api_error(host: str, what: str, exc: Any) -> CliError:
    """An ApiException about `what` as advice: not installed, not found, credentials, RBAC."""
    status = int(exc.status or 0)
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    message = str(body.get("message") or exc.reason or "error")
    if status == 404 and not dig(body, "details", "name"):
        return CliError(
            f"the PromptAlias API ({ALIASES}.{GROUP}) is not installed in the cluster at {host}",
            "install the CRDs (helm install promptalias charts/promptalias, or kubectl apply -f crds/)",
        )
    if status == 404:
        return CliError(f"{what}: not found", "check the name and the namespace (-n)")
    if status == 401:
        return CliError(
            f"the cluster at {host} refused your credentials (401)",
            "refresh them (log in again) or fix the user in your kubeconfig",
        )
    if status == 403:
        return CliError(
            f"{what}: forbidden ({message})", "ask a cluster admin for RBAC access to promptaliases"
        )
    return CliError(f"{what}: the API server answered {status} ({message})", "try again")


class KubeCluster:
    """The user's cluster, through their kubeconfig; every failure becomes a CliError."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        cfg = client.Configuration()
        try:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg, persist_config=False
            )
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise CliError(
                f"no usable Kubernetes configuration in {where} ({' '.join(str(exc).split())})",
                "point KUBECONFIG (or --kubeconfig) at a kubeconfig for your cluster, e.g. "
                '`eval "$(promptalias testbed env)"` for the local testbed',
            ) from None
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
        self._default_namespace = str(dig(chosen or {}, "context", "namespace") or "default")
        cfg.retries = 0  # fail fast with a clear message instead of urllib3's silent retries
        self.host = str(cfg.host)
        self._api_client = client.ApiClient(cfg)
        self._custom = client.CustomObjectsApi(self._api_client)

    @property
    def default_namespace(self) -> str:
        return self._default_namespace

    def close(self) -> None:
        self._api_client.close()

    # ---- the custom resources ----

    def list_aliases(self, namespace: str | None) -> list[dict[str, Any]]:
        return self._list(ALIASES, namespace)

    def get_alias(self, namespace: str, name: str) -> dict[str, Any]:
        return self._get(ALIASES, namespace, name)

    def patch_alias(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._patch(ALIASES, namespace, name, patch)

    def list_experiments(self, namespace: str) -> list[dict[str, Any]]:
        return self._list(EXPERIMENTS, namespace)

    def get_experiment(self, namespace: str, name: str) -> dict[str, Any]:
        return self._get(EXPERIMENTS, namespace, name)

    def patch_experiment(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._patch(EXPERIMENTS, namespace, name, patch)

    def get_registry(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        if kind == "ClusterPromptRegistry":
            got: dict[str, Any] = self._call(
                f"ClusterPromptRegistry {name!r}",
                self._custom.get_cluster_custom_object,
                GROUP,
                VERSION,
                CLUSTER_REGISTRIES,
                name,
            )
            return got
        return self._get(REGISTRIES, namespace, name)

    def latest_warning(self, namespace: str, name: str, since: datetime) -> str | None:
        from kubernetes import client

        try:
            events = self._call(
                "list Events",
                client.CoreV1Api(self._api_client).list_namespaced_event,
                namespace,
                field_selector=f"involvedObject.name={name},involvedObject.kind=PromptAlias,type=Warning",
            )
        except CliError:
            return None  # a hint only: lacking RBAC for Events must not hide the real message
        found = []
        for event in events.items:
            stamp = parse_timestamp(event.last_timestamp or event.event_time or event.first_timestamp)
            if stamp is not None and stamp >= since.replace(microsecond=0):
                found.append((stamp, f"{event.reason}: {' '.join(str(event.message or '').split())}"))
        return max(found)[1] if found else None

    # ---- one request ----

    def _list(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        kinds = f"{_KINDS[plural]}s"
        if namespace is None:
            got = self._call(f"list {kinds}", self._custom.list_cluster_custom_object, GROUP, VERSION, plural)
        else:
            got = self._call(
                f"list {kinds} in namespace {namespace!r}",
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
            )
        items: list[dict[str, Any]] = got.get("items", [])
        return items

    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self._call(
            f"{_KINDS[plural]} {name!r} in namespace {namespace!r}",
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
        )
        return got

    def _patch(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        got: dict[str, Any] = self._call(
            f"patch {_KINDS[plural]} {name!r} in namespace {namespace!r}",
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            dict(patch),
            field_manager=CLI_FIELD_MANAGER,
            _content_type="application/merge-patch+json",
        )
        return got

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as exc:
            raise api_error(self.host, what, exc) from None
        except (HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise CliError(
                f"cannot reach the Kubernetes API server at {self.host} ({' '.join(str(reason).split())})",
                "check that the cluster is up and that KUBECONFIG / --context point at it "
                "(`kubectl cluster-info`)",
            ) from None
