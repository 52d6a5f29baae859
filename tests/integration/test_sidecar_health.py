"""Sidecar health on the real testbed: unreachable apiserver, a silently dead connection, least privilege."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kit import metric_total
from promptalias.projection.render import build_configmap, projection_key, render_projection
from promptalias.sidecar.testing import SidecarProcess, free_port
from promptalias.testbed import Testbed
from sidecar_kit import owned

pytestmark = pytest.mark.integration


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def configmap(namespace: str, prompt: str, alias: str, version: int) -> dict[str, Any]:
    doc = render_projection(
        name=prompt,
        alias=alias,
        version=version,
        template=f"v{version} {{{{text}}}}",
        response_format=None,
        model_config=None,
        tags={},
        updated="2025-01-01T00:00:00Z",
    )
    body = build_configmap(namespace, f"{prompt}-{alias}", "00000000-0000-0000-0000-000000000000", doc)
    del body["metadata"]["ownerReferences"]  # set by `apply` (sidecar_kit.owned) to a real PromptAlias
    return body


def apply(core: client.CoreV1Api, body: dict[str, Any]) -> None:
    body = owned(core, body)  # the sidecar trusts only projections owned by a PromptAlias
    meta = body["metadata"]
    try:
        core.replace_namespaced_config_map(meta["name"], meta["namespace"], body)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(meta["namespace"], body)


def file_version(directory: Path, key: str) -> int | None:
    try:
        return int(json.loads((directory / key).read_bytes())["version"])
    except (OSError, ValueError, KeyError):
        return None


def kubeconfig_copy(
    testbed: Testbed, path: Path, *, server: str | None = None, token: str | None = None
) -> Path:
    config = yaml.safe_load(testbed.kubeconfig.read_text())
    if server is not None:
        config["clusters"][0]["cluster"]["server"] = server
    if token is not None:
        config["users"][0]["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def watch_cycles(sidecar: SidecarProcess) -> float:
    """Watches the API server ended normally (its timeout), from the sidecar's own metrics."""
    _, _, body = sidecar.get("/metrics")
    return metric_total(
        body.decode() if isinstance(body, bytes) else body,
        "promptalias_sidecar_watch_restarts_total",
        reason="closed",
    )


def health(sidecar: SidecarProcess) -> tuple[int, dict[str, Any]]:
    status, _, body = sidecar.get("/healthz")
    return status, json.loads(body)


@pytest.fixture
def core(k8s_api: Any, crds: Path) -> client.CoreV1Api:
    return client.CoreV1Api(k8s_api)


@pytest.fixture
def sidecars(tmp_path: Path) -> Iterator[list[SidecarProcess]]:
    started: list[SidecarProcess] = []
    yield started
    for sidecar in started:
        sidecar.stop()
        print(f"--- {sidecar.log}\n{sidecar.logs()}")


def test_healthz_fails_when_the_apiserver_is_unreachable(
    testbed: Testbed, tmp_path: Path, namespace: str, sidecars: list[SidecarProcess]
) -> None:
    closed = f"https://127.0.0.1:{free_port()}"
    kubeconfig = kubeconfig_copy(testbed, tmp_path / "kubeconfig", server=closed)
    sidecar = SidecarProcess(
        [
            "--namespace",
            namespace,
            "--dir",
            str(tmp_path / "p"),
            "--stale-after",
            "2",
            "--kubeconfig",
            str(kubeconfig),
        ],
        log=tmp_path / "sidecar.log",
    )
    sidecars.append(sidecar.start())
    sidecar.wait_for("/readyz", 503)
    took = wait_until(lambda: sidecar.status_of("/healthz") == 503, 10, "/healthz to fail")
    status, body = health(sidecar)
    assert status == 503
    assert "no contact since start" in body["problems"][0]
    assert "Connect" in body["problems"][0] or "connect" in body["problems"][0].lower()
    assert sidecar.status_of("/readyz") == 503
    metrics = sidecar.get("/metrics")[2].decode()
    assert "promptalias_sidecar_healthy 0" in metrics
    assert 'reason="error"' in metrics
    print(f"/healthz failed {took:.1f} s after the sidecar answered")


class Proxy:
    """A TCP relay in front of the apiserver that can go silent (a dead network, not a closed port)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.silent = False
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.sockets.append(downstream)
                if self.silent:
                    continue  # accepted, never answered: the TLS handshake hangs
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets.append(upstream)
            threading.Thread(target=self._pump, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self.silent:
                continue  # swallow everything, close nothing
            try:
                dst.sendall(data)
            except OSError:
                return

    def go_silent(self) -> None:
        self.silent = True

    def restore(self) -> None:
        # Reset the connections held open while silent, as a recovering network would.
        with self.lock:
            held, self.sockets = self.sockets, []
            self.silent = False
        for sock in held:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.restore()


def test_healthz_catches_a_silently_dead_watch_and_recovers(
    testbed: Testbed,
    core: client.CoreV1Api,
    tmp_path: Path,
    namespace: str,
    sidecars: list[SidecarProcess],
) -> None:
    server = yaml.safe_load(testbed.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    proxy = Proxy(int(server.rsplit(":", 1)[1]))
    try:
        kubeconfig = kubeconfig_copy(
            testbed, tmp_path / "kubeconfig", server=f"https://127.0.0.1:{proxy.port}"
        )
        prompts = tmp_path / "p"
        key = projection_key("p", "prod")
        apply(core, configmap(namespace, "p", "prod", 1))
        sidecar = SidecarProcess(
            [
                "--namespace",
                namespace,
                "--dir",
                str(prompts),
                "--stale-after",
                "3",
                "--kubeconfig",
                str(kubeconfig),
            ],
            log=tmp_path / "sidecar.log",
        )
        sidecars.append(sidecar.start())
        sidecar.wait_ready()
        assert file_version(prompts, key) == 1
        # Two complete watch cycles (timeoutSeconds=1, each ended by the server): quiet but healthy.
        cycles = watch_cycles(sidecar)
        wait_until(lambda: watch_cycles(sidecar) >= cycles + 2, 30, "two more watch cycles")
        assert health(sidecar)[0] == 200

        proxy.go_silent()
        went_bad = wait_until(lambda: sidecar.status_of("/healthz") == 503, 15, "/healthz to notice")
        print(f"silent network → /healthz 503 after {went_bad:.1f} s")
        apply(core, configmap(namespace, "p", "prod", 2))  # a change it cannot see now
        assert health(sidecar)[1]["problems"]
        assert file_version(prompts, key) == 1  # keeps serving what it has
        assert sidecar.get("/prompts/p/prod")[0] == 200

        proxy.restore()
        recovered = wait_until(lambda: sidecar.status_of("/healthz") == 200, 30, "/healthz to recover")
        wait_until(lambda: file_version(prompts, key) == 2, 10, "the change made during the outage")
        print(f"network back → healthy after {recovered:.1f} s")
    finally:
        proxy.close()


def test_least_privilege_watch_by_name(
    testbed: Testbed,
    k8s_api: Any,
    core: client.CoreV1Api,
    tmp_path: Path,
    namespace: str,
    sidecars: list[SidecarProcess],
) -> None:
    allowed, other = configmap(namespace, "allowed", "prod", 1), configmap(namespace, "other", "prod", 1)
    apply(core, allowed)
    apply(core, other)
    rbac = client.RbacAuthorizationV1Api(k8s_api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "read-one-projection"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": [allowed["metadata"]["name"]],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "app"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "read-one-projection",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": namespace}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "app", namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    kubeconfig = kubeconfig_copy(testbed, tmp_path / "kubeconfig", token=token)

    # One watch per name, by field selector: allowed by resourceNames.
    prompts = tmp_path / "by-name"
    by_name = SidecarProcess(
        [
            "--namespace", namespace, "--dir", str(prompts), "--kubeconfig", str(kubeconfig),
            "--names", allowed["metadata"]["name"],
        ],
        log=tmp_path / "by-name.log",
    )  # fmt: skip
    sidecars.append(by_name.start())
    by_name.wait_ready()
    assert sorted(p.name for p in prompts.iterdir() if not p.name.startswith("..")) == ["allowed.prod.json"]
    apply(core, configmap(namespace, "allowed", "prod", 2))
    wait_until(lambda: file_version(prompts, "allowed.prod.json") == 2, 10, "the update by name")
    assert by_name.get("/prompts/other/prod")[0] == 404

    # The same identity may not list the namespace: that sidecar never becomes ready, and says why.
    by_label = SidecarProcess(
        ["--namespace", namespace, "--dir", str(tmp_path / "by-label"), "--kubeconfig", str(kubeconfig),
         "--stale-after", "2"],
        log=tmp_path / "by-label.log",
    )  # fmt: skip
    sidecars.append(by_label.start())
    wait_until(lambda: by_label.status_of("/healthz") == 503, 10, "/healthz to fail on 403")
    assert by_label.status_of("/readyz") == 503
    assert "HTTP 403" in json.dumps(health(by_label)[1])
