"""etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, data on tmpfs.

Real components with the production security model switched on: TLS, client-certificate auth,
RBAC, service-account token signing, admission (PodSecurity, webhooks). No scheduler or kubelet:
pods are admitted and stored but stay Pending.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from promptalias.testbed.build import Binaries
from promptalias.testbed.certs import Pki, write_pki
from promptalias.testbed.errors import TestbedError
from promptalias.testbed.ports import LOOPBACK, free_port
from promptalias.testbed.procs import Server, http_ok
from promptalias.testbed.progress import say

SERVICE_CIDR = "10.0.0.0/24"
_ADMISSION = (
    "NamespaceLifecycle,ServiceAccount,PodSecurity,LimitRanger,ResourceQuota,DefaultStorageClass,"
    "MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy"
)


def _kubeconfig(server: str, ca: Path, crt: Path, key: Path, user: str) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user}}],
        "current-context": "testbed",
    }
    return json.dumps(doc, indent=2)


@dataclass
class ControlPlane:
    """A loopback Kubernetes control plane living in `run_dir`."""

    binaries: Binaries
    run_dir: Path
    tied: bool = True
    servers: list[Server] = field(default_factory=list)
    apiserver_port: int = 0
    pki: Pki | None = None
    # 127.0.0.1, or the node's private IP when a node runs (pods cannot reach the host's loopback)
    host: str = LOOPBACK

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "kubeconfig"

    def _ssl(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        ctx.load_cert_chain(str(self.pki.admin_crt), str(self.pki.admin_key))
        return ctx

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        """An admin GET against the apiserver (used for readiness probes)."""
        with urllib.request.urlopen(  # noqa: S310 - https URL built from loopback + port
            self.url + path, context=self._ssl(), timeout=timeout
        ) as response:
            status: int = response.status
            return status, response.read()

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki = write_pki(self.run_dir / "pki", extra_ips=[self.host])
        for attempt in range(3):  # a free port can be taken between probing and binding
            try:
                self._start_etcd()
                self._start_apiserver(pki)
                break
            except TestbedError as exc:
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
                say("a port was taken meanwhile; retrying with new ports")
                self.stop()
        self.kubeconfig.write_text(
            _kubeconfig(self.url, pki.ca_crt, pki.admin_crt, pki.admin_key, "promptalias-admin")
        )
        self._start_controller_manager(pki)
        self._wait_for_default_service_account()

    def _run(
        self, name: str, argv: list[str], ready: Callable[[], bool], timeout_s: float, remedy: str
    ) -> None:
        """Start one component (log in logs/<name>.log, stopped by `stop`) and wait until `ready`."""
        server = Server(name, argv, self.run_dir / "logs" / f"{name}.log", tied=self.tied)
        self.servers.append(server)
        server.run(ready, timeout_s, remedy)

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://{LOOPBACK}:{client}"

        def healthy() -> bool:
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=1) as response:  # noqa: S310
                return bool(json.loads(response.read()).get("health") == "true")

        self._run(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=testbed",
                f"--data-dir={self.run_dir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://{LOOPBACK}:{peer}",
                f"--initial-advertise-peer-urls=http://{LOOPBACK}:{peer}",
                f"--initial-cluster=testbed=http://{LOOPBACK}:{peer}",
                "--unsafe-no-fsync=true",  # tmpfs already; a test cluster trades durability for speed
                "--log-level=warn",
            ],
            healthy,
            30,
            "check that /dev/shm is writable and the etcd binary runs",
        )

    def _start_apiserver(self, pki: Pki) -> None:
        self.apiserver_port = free_port()
        self._run(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                # with a node, the `kubernetes` Service's endpoint is this address (kube-proxy routes it)
                f"--endpoint-reconciler-type={'none' if self.host == LOOPBACK else 'lease'}",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki.serving_crt}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_crt}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                # logs/exec reach a node's kubelet by its IP (the node's hostname resolves nowhere)
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--enable-admission-plugins={_ADMISSION}",
                f"--cert-dir={self.run_dir / 'apiserver-certs'}",
                "--profiling=false",
                "--v=1",
            ],
            lambda: self.get("/readyz")[0] == 200,
            90,
            "see the apiserver log above; is etcd healthy?",
        )

    def _start_controller_manager(self, pki: Pki) -> None:
        kcm_config = self.run_dir / "kcm.kubeconfig"
        kcm_config.write_text(
            _kubeconfig(self.url, pki.ca_crt, pki.kcm_crt, pki.kcm_key, "system:kube-controller-manager")
        )
        port = free_port()
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # KCM serves a self-signed cert on loopback
        self._run(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kcm_config}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_crt}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={pki.ca_crt}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--leader-elect=false",
                f"--flex-volume-plugin-dir={self.run_dir / 'flexvolume'}",
                "--controllers=*",
                "--v=1",
            ],
            http_ok(f"https://{LOOPBACK}:{port}/healthz", insecure),
            60,
            "see the controller-manager log above",
        )

    def _wait_for_default_service_account(self, timeout_s: float = 60) -> None:
        """Proves the controller manager is really working, not just listening."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200:
                    return
            except Exception:  # noqa: BLE001,S110 - 404 until the controller creates it
                pass
            time.sleep(0.1)
        raise TestbedError(
            "start kube-controller-manager",
            "the default ServiceAccount never appeared: controllers are not running",
            f"see {self.run_dir / 'logs' / 'kube-controller-manager.log'}",
        )

    def version(self) -> str:
        body = json.loads(self.get("/version")[1])
        return str(body.get("gitVersion", "unknown"))

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()
