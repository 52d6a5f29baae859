"""The testbed: a loopback control plane + an MLflow server, for tests, `make demo` and benchmarks.

`Testbed.start()` gives a session-owned testbed (stopped with the owner, even if it crashes);
`Testbed.start(detached=True)` is what `promptalias testbed up` runs: it outlives the command and
is stopped by `promptalias testbed down`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from promptalias.testbed import dns
from promptalias.testbed.build import K8S_VERSION, ensure_binaries
from promptalias.testbed.controlplane import ControlPlane
from promptalias.testbed.errors import TestbedError
from promptalias.testbed.images import NodeImages, ensure_images
from promptalias.testbed.kubectl import run_kubectl
from promptalias.testbed.mlflowserver import MlflowServer
from promptalias.testbed.node import NODE_IP, NODE_NAME, Node, claim_node, cleanup_node, ensure_host_packages
from promptalias.testbed.nodebuild import NodeBinaries, ensure_node_binaries
from promptalias.testbed.ports import LOOPBACK
from promptalias.testbed.procs import DETACHED, RUN_PREFIX, RUN_ROOT, kill_group, reap_orphans, write_owner
from promptalias.testbed.progress import say, step

DETACHED_DIR = RUN_ROOT / f"{RUN_PREFIX}testbed"
# With a node, the testbed's MLflow is also a Service: pods use http://mlflow.mlflow.svc:5000.
MLFLOW_SERVICE = ("mlflow", "mlflow")  # name, namespace
MLFLOW_SERVICE_PORT = 5000
MLFLOW_CLUSTER_URI = f"http://{MLFLOW_SERVICE[0]}.{MLFLOW_SERVICE[1]}.svc:{MLFLOW_SERVICE_PORT}"
STATE_FILE = "state.json"


def use_existing_cluster() -> bool:
    return os.environ.get("USE_EXISTING_CLUSTER", "").lower() in {"1", "true", "yes"}


@dataclass
class Testbed:
    """A running testbed. `kubeconfig` is an admin kubeconfig; `mlflow` can be stopped and restarted."""

    __test__ = False  # not a pytest test class despite the name

    run_dir: Path
    kubeconfig: Path
    kubectl_path: str
    mlflow: MlflowServer
    controlplane: ControlPlane | None = None
    server_version: str = "unknown"
    extra_mlflows: list[MlflowServer] = field(default_factory=list)
    node: Node | None = None
    node_ready_seconds: float = 0.0
    images_import_seconds: float = 0.0
    images: NodeImages | None = None
    dns_ready_seconds: float = 0.0

    @property
    def mlflow_cluster_uri(self) -> str:
        """MLflow as pods on the node reach it: by Service name, through CoreDNS and kube-proxy."""
        return MLFLOW_CLUSTER_URI if self.node is not None else self.mlflow_uri

    @property
    def mlflow_uri(self) -> str:
        return self.mlflow.uri

    @classmethod
    def start(cls, *, detached: bool = False, node: bool = False, node_wait_s: float = 0) -> Testbed:
        """Start a testbed; `node=True` adds a real node (kubelet, containerd, scheduler, proxy).

        A node needs root, Debian packages (installed with apt-get when missing), node binaries
        and images (built once, then cached); only one node runs per machine, so a second
        testbed with a node waits up to `node_wait_s` for the first to go.
        """
        tied = not detached
        images: NodeImages | None = None
        node_binaries: NodeBinaries | None = None
        if node:
            ensure_host_packages()
            node_binaries = ensure_node_binaries()
            images = ensure_images()
        if detached:
            if DETACHED_DIR.exists():
                raise TestbedError(
                    "testbed up",
                    f"a testbed already exists in {DETACHED_DIR}",
                    "run `promptalias testbed env` to use it or `promptalias testbed down` to remove it",
                )
            run_dir = DETACHED_DIR
        else:
            reaped = reap_orphans()
            if reaped:
                say(f"cleaned up {len(reaped)} testbed(s) left by crashed runs")
            run_dir = RUN_ROOT / f"{RUN_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}"
        run_dir.mkdir(parents=True)
        owner = DETACHED if detached else os.getpid()
        write_owner(run_dir, owner, [])
        bed: Testbed | None = None
        host = NODE_IP if node else LOOPBACK
        try:
            the_node: Node | None = None
            if node:
                assert node_binaries is not None
                claim_node(run_dir / "node", owner, wait_s=node_wait_s)
                the_node = Node(
                    node_binaries, run_dir / "node", run_dir / "k8s" / "kubeconfig", "", tied=tied
                )
                the_node.node_dir.mkdir(parents=True)
                the_node.setup_network()
            cluster_names = (
                (
                    f"{MLFLOW_SERVICE[0]}.{MLFLOW_SERVICE[1]}.svc",
                    f"{MLFLOW_SERVICE[0]}.{MLFLOW_SERVICE[1]}.svc.cluster.local",
                )
                if node
                else ()
            )
            mlflow = MlflowServer(run_dir / "mlflow", tied=tied, host=host, extra_hosts=cluster_names)
            if use_existing_cluster():
                kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
                if not kubeconfig.is_file():
                    raise TestbedError(
                        "use existing cluster", f"no kubeconfig at {kubeconfig}", "set KUBECONFIG"
                    )
                kubectl = shutil.which("kubectl") or "kubectl"
                bed = cls(run_dir, kubeconfig, kubectl, mlflow)
                say(f"USE_EXISTING_CLUSTER=true: using the cluster of {kubeconfig}")
            else:
                binaries = ensure_binaries()
                plane = ControlPlane(binaries, run_dir / "k8s", tied=tied, host=host)
                bed = cls(run_dir, plane.kubeconfig, str(binaries.kubectl), mlflow, controlplane=plane)
                bed.node = the_node
                bed.images = images
                with step(
                    f"Starting Kubernetes {K8S_VERSION} (etcd, kube-apiserver, kube-controller-manager)"
                ):
                    plane.start()
                    bed._record(owner)
                bed.server_version = plane.version()
            with step("Starting MLflow server (sqlite)"):
                mlflow.start()
                bed._record(owner)
            if the_node is not None:
                assert images is not None
                the_node.kubectl = bed.kubectl_path
                with step("Starting the node (containerd, kubelet, kube-scheduler, kube-proxy)"):
                    bed._start_node(the_node, images, owner)
        except BaseException:
            if bed is not None:
                bed.stop()
            else:
                if the_node is not None:
                    cleanup_node(the_node.node_dir)
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        bed._write_state()
        return bed

    def _start_node(self, node: Node, images: NodeImages, owner: int) -> None:
        started = time.monotonic()
        node.start_containerd()
        self._record(owner)
        for image in images.all():
            node.import_image(image.archive)
        self.images_import_seconds = round(time.monotonic() - started, 1)
        say(f"imported {len(images.all())} images into containerd in {self.images_import_seconds}s")
        started = time.monotonic()
        node.start_dns()
        self._record(owner)
        self.dns_ready_seconds = round(time.monotonic() - started, 1)
        say(f"CoreDNS answers for {dns.CLUSTER_DOMAIN} on {NODE_IP}:53 ({self.dns_ready_seconds}s)")
        started = time.monotonic()
        node.start_kubelet()
        node.start_scheduler()
        node.start_proxy()
        self._record(owner)
        if owner != DETACHED:
            node.start_watchdog(owner)
        node.wait_ready()
        self.node_ready_seconds = round(time.monotonic() - started, 1)
        say(f"node {NODE_NAME} Ready {self.node_ready_seconds}s after kubelet started")
        # The testbed's MLflow by name inside the cluster, as the README writes it.
        node.apply(
            dns.selectorless_service(
                MLFLOW_SERVICE[0],
                MLFLOW_SERVICE[1],
                NODE_IP,
                [("http", "TCP", MLFLOW_SERVICE_PORT, self.mlflow.port)],
                create_namespace=True,
            )
        )

    def _groups(self) -> list[int]:
        groups = [s.pid for s in self.controlplane.servers] if self.controlplane else []
        if self.node is not None:
            groups += [s.pid for s in self.node.servers]
        for server in (self.mlflow, *self.extra_mlflows):
            if server.server is not None:
                groups.append(server.server.pid)
        return groups

    def _record(self, owner: int) -> None:
        write_owner(self.run_dir, owner, self._groups())

    def _write_state(self) -> None:
        state = {
            "kubeconfig": str(self.kubeconfig),
            "kubectl": self.kubectl_path,
            "mlflowUri": self.mlflow_uri,
            "mlflowRunDir": str(self.mlflow.run_dir),
            "serverVersion": self.server_version,
        }
        if self.node is not None:
            state["node"] = NODE_NAME
            state["nodeDir"] = str(self.node.node_dir)
            state["nodeReadySeconds"] = str(self.node_ready_seconds)
            state["mlflowClusterUri"] = self.mlflow_cluster_uri
        (self.run_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def env(self) -> dict[str, str]:
        """Environment for processes that should talk to this testbed."""
        bin_dir = str(Path(self.kubectl_path).parent)
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        }

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the testbed's own kubectl (same release as the server: no version skew)."""
        result = run_kubectl(self.kubectl_path, self.kubeconfig, *args, stdin=stdin)
        if check and result.returncode != 0:
            raise TestbedError(f"kubectl {' '.join(args)}", result.stderr.strip() or result.stdout.strip())
        return result

    def start_extra_mlflow(self, *, basic_auth: bool = False) -> MlflowServer:
        """Another MLflow server (e.g. with basic auth), stopped with the testbed."""
        server = MlflowServer(
            self.run_dir / f"mlflow-{len(self.extra_mlflows) + 1}", basic_auth=basic_auth, tied=True
        )
        server.start()
        self.extra_mlflows.append(server)
        self._record(os.getpid())
        return server

    def stop_extra_mlflow(self, server: MlflowServer) -> None:
        """Stop one server started by `start_extra_mlflow` before the testbed stops."""
        server.stop()
        if server in self.extra_mlflows:
            self.extra_mlflows.remove(server)

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        for server in (*self.extra_mlflows, self.mlflow):
            server.stop()
        if self.controlplane is not None:
            self.controlplane.stop()
        if not os.environ.get("PROMPTALIAS_KEEP_TESTBED"):
            shutil.rmtree(self.run_dir, ignore_errors=True)


def detached_state() -> dict[str, str] | None:
    try:
        state: dict[str, str] = json.loads((DETACHED_DIR / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state


def stop_detached() -> bool:
    """Stop the testbed started by `testbed up`. Returns False when there was none."""
    if not DETACHED_DIR.exists():
        return False
    try:
        owner = json.loads((DETACHED_DIR / "owner.json").read_text())
        groups = [int(g) for g in owner.get("groups", [])]
    except (OSError, ValueError):
        groups = []
    for pgid in reversed(groups):
        kill_group(pgid)
    time.sleep(0.1)
    if (DETACHED_DIR / "node").exists():
        cleanup_node(DETACHED_DIR / "node")
    shutil.rmtree(DETACHED_DIR, ignore_errors=True)
    return True
