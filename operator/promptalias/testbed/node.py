"""A real one-node cluster for the testbed: containerd + kubelet + kube-proxy + kube-scheduler.

Everything lives under the testbed's run directory (containerd root/state/socket, kubelet root,
CNI config and IPAM state, logs) except what the kernel keeps globally, which is recorded and
removed by `cleanup_node`: the port-less bridge interface that carries the node IP, the CNI bridge, the pod
network namespaces (under containerd's state dir), iptables rules (kube-proxy's, and the bridge
plugin's masquerade chains) and the `kubepods` cgroups. Only one node can run on a machine (the
kube-proxy chains are global): `claim_node` takes it, waiting for or reaping an earlier owner.

Facts this relies on (docs/node.md): no systemd here, so cgroupfs and self-supervised processes;
cgroup v1, so `failCgroupV1: false`; root lacks CAP_SYS_RESOURCE, so `restrict_oom_score_adj`.

Over 400 lines on purpose: starting the node and cleaning up after it must name the same
interfaces, mounts, chains and cgroups; the build and the images are in nodebuild.py and images.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from promptalias.testbed import dns
from promptalias.testbed.errors import TestbedError
from promptalias.testbed.kubectl import run_kubectl
from promptalias.testbed.nodebuild import NodeBinaries
from promptalias.testbed.ports import LOOPBACK, free_port
from promptalias.testbed.procs import RUN_ROOT, Server, pid_alive
from promptalias.testbed.progress import say

NODE_NAME = "promptalias-node"
NODE_IP = "10.254.0.1"  # private, on a port-less bridge of our own; never routed off the machine
NODE_IFACE = "promptalias0"
BRIDGE = "pa-cni0"
CNI_NETWORK = "promptalias-pods"
POD_CIDR = "10.244.0.0/24"
CLUSTER_DNS = "10.0.0.10"  # the kube-dns Service (testbed Service range 10.0.0.0/24, static band)
CNI_BIN_DIR = Path("/usr/lib/cni")
CLAIM_FILE = RUN_ROOT / "promptalias.node"
KUBELET_PORT = 10250
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
KUBERNETES_SERVICE_IP = "10.0.0.1"  # the first address of the Service range
STATE_FILE = "node.json"

# Debian packages the node needs: command or file that proves it is there -> package.
HOST_PACKAGES: dict[str, str] = {
    "containerd": "containerd",
    "runc": "runc",
    str(CNI_BIN_DIR / "bridge"): "containernetworking-plugins",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "buildah": "buildah",
    "debootstrap": "debootstrap",
    "gcc": "gcc",
}


def _present(probe: str) -> bool:
    return Path(probe).exists() if probe.startswith("/") else shutil.which(probe) is not None


def ensure_host_packages() -> None:
    """Install the node's Debian packages with apt-get where missing (root only), else say what to do."""
    missing = sorted({pkg for probe, pkg in HOST_PACKAGES.items() if not _present(probe)})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise TestbedError(
            "install node packages",
            f"missing {', '.join(missing)} and not root on a Debian system",
            f"as root: apt-get install {' '.join(missing)}",
        )
    say(f"installing {', '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TestbedError(
                "install node packages",
                f"`{' '.join(argv)}` exited with {result.returncode}: {result.stderr.strip()[-800:]}",
                f"install {' '.join(missing)} by hand",
            )


def _run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise TestbedError(f"run {' '.join(argv)}", result.stderr.strip() or result.stdout.strip())
    return result


# ---- the machine-wide claim ---------------------------------------------------------------------


def _claim_owner() -> tuple[int, Path] | None:
    try:
        data = json.loads(CLAIM_FILE.read_text())
        return int(data["owner"]), Path(data["nodeDir"])
    except (OSError, ValueError, KeyError):
        return None


def claim_node(node_dir: Path, owner: int, *, wait_s: float = 0) -> None:
    """Take the machine's single node slot; reap a dead owner's node, wait up to `wait_s` for a live one."""
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        try:
            fd = os.open(CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = _claim_owner()
            if current is None or not _owner_alive(current[0], current[1]):
                if current is not None:
                    say(f"removing the node left by a dead owner (pid {current[0]})")
                    cleanup_node(current[1])
                with contextlib.suppress(FileNotFoundError):
                    CLAIM_FILE.unlink()
                continue
            if time.monotonic() >= deadline:
                raise TestbedError(
                    "start node",
                    f"another testbed (pid {current[0] or 'detached'}) runs the node in {current[1]}",
                    "only one node fits on a machine: stop it (`promptalias testbed down`) or wait",
                ) from None
            if not announced:
                say(f"waiting for the node of pid {current[0]} to finish (one node per machine)")
                announced = True
            time.sleep(2)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump({"owner": owner, "nodeDir": str(node_dir)}, handle)
        return


def _owner_alive(owner: int, node_dir: Path) -> bool:
    if owner == 0:  # a detached testbed: alive while its directory is
        return node_dir.exists()
    return pid_alive(owner)


def release_claim(node_dir: Path) -> None:
    current = _claim_owner()
    if current is not None and current[1] == node_dir:
        with contextlib.suppress(FileNotFoundError):
            CLAIM_FILE.unlink()


# ---- cleanup (also run by the reaper for a dead owner) -------------------------------------------


def _processes_matching(needles: list[str], cgroup_marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if any(needle in cmdline for needle in needles):
                pids.append(int(proc.name))
                continue
            if cgroup_marker and cgroup_marker in (proc / "cgroup").read_text():
                pids.append(int(proc.name))
    return [pid for pid in pids if pid != os.getpid()]


def _kill_node_processes(node_dir: Path) -> None:
    """Every process of the node: our servers, containerd's shims and the containers they run."""
    needles = [str(node_dir)]
    for _ in range(50):
        pids = _processes_matching(needles, "/kubepods")
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _unmount_under(prefixes: list[str]) -> None:
    for _ in range(5):
        mounts = []
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                point = line.split()[4].replace("\\040", " ")
                if any(point == p or point.startswith(p + "/") for p in prefixes):
                    mounts.append(point)
        if not mounts:
            return
        for point in sorted(mounts, key=len, reverse=True):
            _run("umount", "-l", point, check=False)


def _iptables_cleanup(kube_proxy: str | None) -> None:
    if kube_proxy and Path(kube_proxy).exists():
        _run(kube_proxy, "--cleanup", "--v=0", check=False)
    # The bridge plugin's ipMasq rules: POSTROUTING -> CNI-<hash>, tagged with the network's name.
    saved = _run("iptables-save", "-t", "nat", check=False).stdout
    chains: set[str] = set()
    for line in saved.splitlines():
        if line.startswith("-A POSTROUTING") and f'name: \\"{CNI_NETWORK}\\"' in line:
            parts = line.split()
            if "-j" in parts:
                chains.add(parts[parts.index("-j") + 1])
            _run("iptables", "-t", "nat", "-D", *_split_rule(line[len("-A ") :]), check=False)
    for chain in chains:
        if chain.startswith("CNI-"):
            _run("iptables", "-t", "nat", "-F", chain, check=False)
            _run("iptables", "-t", "nat", "-X", chain, check=False)
    # What kube-proxy --cleanup leaves: kubelet's KUBE-FIREWALL and canary chains (IPv4 and IPv6).
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            dump = _run(f"{tool}-save", "-t", table, check=False).stdout.splitlines()
            kube = [line.split()[0][1:] for line in dump if line.startswith(":KUBE-")]
            for line in dump:
                parts = line.split()
                jumps = "-j" in parts and parts[parts.index("-j") + 1] in kube
                if line.startswith("-A ") and jumps and not parts[1].startswith("KUBE-"):
                    _run(tool, "-t", table, "-D", *_split_rule(line[len("-A ") :]), check=False)
            for chain in kube:
                _run(tool, "-t", table, "-F", chain, check=False)
            for chain in kube:
                _run(tool, "-t", table, "-X", chain, check=False)


def _split_rule(rule: str) -> list[str]:
    import shlex

    return shlex.split(rule)


def _remove_cgroups() -> None:
    root = Path("/sys/fs/cgroup")
    for hierarchy in root.iterdir() if root.is_dir() else []:
        for top in hierarchy.glob("kubepods*"):
            for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


def cleanup_node(node_dir: Path) -> None:
    """Remove every process, mount, interface, iptables rule and cgroup a node made. Idempotent."""
    try:
        state = json.loads((node_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        state = {}
    _kill_node_processes(node_dir)
    _unmount_under([str(node_dir)])
    for iface in (BRIDGE, NODE_IFACE):
        _run("ip", "link", "del", iface, check=False)
    _iptables_cleanup(state.get("kubeProxy"))
    if forward := state.get("ipForward"):  # the bridge plugin turned forwarding on
        with contextlib.suppress(OSError):
            Path("/proc/sys/net/ipv4/ip_forward").write_text(forward)
    _remove_cgroups()
    shutil.rmtree(node_dir, ignore_errors=True)
    release_claim(node_dir)


# ---- the node ----------------------------------------------------------------------------------


def _containerd_config(node_dir: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{node_dir / "containerd" / "root"}"
state = "{node_dir / "containerd" / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{node_dir / "containerd.sock"}"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{node_dir / "containerd" / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "{LOOPBACK}"
  stream_server_port = "0"
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{node_dir / "cni" / "net.d"}"
"""


def _cni_config(node_dir: Path) -> str:
    gateway = POD_CIDR.rsplit(".", 1)[0] + ".1"
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(node_dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def _kubelet_config(node_dir: Path, containerd_sock: Path, healthz_port: int, cluster_dns: bool) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # these machines are cgroup v1; 1.35 is the last release that allows it
        "cgroupDriver": "cgroupfs",  # no systemd here
        "containerRuntimeEndpoint": f"unix://{containerd_sock}",
        "imageServiceEndpoint": f"unix://{containerd_sock}",
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": LOOPBACK,
        "healthzPort": healthz_port,
        # Only the apiserver on this machine talks to the kubelet (logs, exec); it has no client cert.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "failSwapOn": False,
        "resolvConf": str(node_dir / "resolv.conf"),
        "clusterDomain": dns.CLUSTER_DOMAIN,
        "clusterDNS": [CLUSTER_DNS] if cluster_dns else [],
        "podCIDR": POD_CIDR,
        "maxPods": 60,
        "serializeImagePulls": False,
        # A test node on tmpfs: never evict, never garbage-collect the locally built images.
        "evictionHard": {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "localStorageCapacityIsolation": False,
        "staticPodPath": "",
        "registerNode": True,
        "syncFrequency": "60s",  # the default: the ConfigMap-volume baseline measures exactly this
        "nodeStatusReportFrequency": "10s",
        "shutdownGracePeriod": "0s",
        "volumePluginDir": str(node_dir / "kubelet-plugins"),
    }
    return json.dumps(config, indent=2)


def _proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> str:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",  # no IPVS modules in these kernels
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"{LOOPBACK}:{healthz_port}",
        "metricsBindAddress": f"{LOOPBACK}:{metrics_port}",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "conntrack": {"maxPerCore": 0},  # leave the machine's conntrack sysctls alone
        "iptables": {"localhostNodePorts": False},
    }
    return json.dumps(config, indent=2)


@dataclass
class Node:
    """kubelet + containerd + kube-proxy + kube-scheduler against a testbed control plane."""

    binaries: NodeBinaries
    node_dir: Path
    kubeconfig: Path
    kubectl: str
    tied: bool = True
    dns: bool = True
    servers: list[Server] = field(default_factory=list)
    watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    ip_forward: str = ""

    @property
    def containerd_sock(self) -> Path:
        return self.node_dir / "containerd.sock"

    def _server(self, name: str, argv: list[str]) -> Server:
        server = Server(name, argv, self.node_dir / "logs" / f"{name}.log", tied=self.tied)
        server.start()
        self.servers.append(server)
        return server

    def record(self) -> None:
        state = {
            "kubeProxy": str(self.binaries.kube_proxy),
            "pids": [s.pid for s in self.servers],
            "ipForward": self.ip_forward,
        }
        (self.node_dir / STATE_FILE).write_text(json.dumps(state))

    def setup_network(self) -> None:
        self.ip_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        _run("ip", "link", "del", NODE_IFACE, check=False)
        # A port-less bridge, not a dummy: these kernels have no dummy driver.
        _run("ip", "link", "add", NODE_IFACE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_IFACE)
        _run("ip", "link", "set", NODE_IFACE, "up")

    def start_containerd(self) -> None:
        for sub in ("containerd/root", "containerd/state", "cni/net.d", "cni/ipam", "kubelet", "logs"):
            (self.node_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.node_dir / "containerd.toml").write_text(_containerd_config(self.node_dir))
        (self.node_dir / "cni" / "net.d" / "10-promptalias.conflist").write_text(_cni_config(self.node_dir))
        # Pods resolve nothing outside the machine: no upstream nameserver.
        (self.node_dir / "resolv.conf").write_text("options ndots:5\n")
        containerd = self._server(
            "containerd", ["containerd", f"--config={self.node_dir / 'containerd.toml'}"]
        )
        self.record()
        containerd.wait_ready(
            lambda: self.ctr("version", check=False).returncode == 0,
            60,
            "see the containerd log above",
        )

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        sock = f"--address={self.containerd_sock}"
        return _run("ctr", sock, "--namespace=k8s.io", *args, check=check, timeout=timeout)

    def import_image(self, archive: Path) -> None:
        # ~0.9 GB unpacked onto tmpfs: a minute or more on a loaded machine
        self.ctr("images", "import", str(archive), timeout=1200)

    def image_names(self) -> set[str]:
        out = self.ctr("images", "list", "--quiet").stdout
        return {line.strip() for line in out.splitlines() if line.strip()}

    def apply(self, manifest: str) -> None:
        result = run_kubectl(self.kubectl, self.kubeconfig, "apply", "-f", "-", stdin=manifest, timeout=60)
        if result.returncode != 0:
            raise TestbedError("kubectl apply", result.stderr.strip() or result.stdout.strip())

    def start_dns(self) -> None:
        """CoreDNS on the node IP, the kube-dns Service in front of it; ready once it answers."""
        health, ready = free_port(), free_port()
        corefile = self.node_dir / "Corefile"
        corefile.write_text(
            dns.corefile(
                bind_ip=NODE_IP,
                kubeconfig=self.kubeconfig,
                health_port=health,
                ready_port=ready,
                loopback=LOOPBACK,
            )
        )
        self.apply(dns.dns_service(NODE_IP, CLUSTER_DNS))
        coredns = self._server("coredns", [str(self.binaries.coredns), "-conf", str(corefile)])
        self.record()

        def answers() -> bool:
            # the apiserver's own Service: CoreDNS has synced its informers and serves on the node IP
            rcode, addresses = dns.resolve_a(NODE_IP, f"kubernetes.default.svc.{dns.CLUSTER_DOMAIN}")
            return rcode == 0 and addresses == [KUBERNETES_SERVICE_IP]

        coredns.wait_ready(answers, 60, "see the CoreDNS log above")

    def start_kubelet(self) -> None:
        config = self.node_dir / "kubelet.yaml"
        config.write_text(_kubelet_config(self.node_dir, self.containerd_sock, free_port(), self.dns))
        kubelet = self._server(
            "kubelet",
            [
                str(self.binaries.kubelet),
                f"--config={config}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={self.node_dir / 'kubelet'}",
                f"--cert-dir={self.node_dir / 'kubelet-pki'}",
                f"--node-ip={NODE_IP}",
                f"--hostname-override={NODE_NAME}",
                "--v=1",
            ],
        )
        self.record()
        kubelet.wait_ready(lambda: kubelet.running() and self._node_registered(), 120, "see the kubelet log")

    def _node_registered(self) -> bool:
        found = run_kubectl(self.kubectl, self.kubeconfig, "get", "node", NODE_NAME, "-o", "name", timeout=30)
        return found.returncode == 0

    def start_scheduler(self) -> None:
        port = free_port()
        self._server(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--authentication-tolerate-lookup-failure=true",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        self.record()

    def start_proxy(self) -> None:
        config = self.node_dir / "kube-proxy.yaml"
        config.write_text(_proxy_config(self.kubeconfig, free_port(), free_port()))
        self._server("kube-proxy", [str(self.binaries.kube_proxy), f"--config={config}", "--v=1"])
        self.record()

    def wait_ready(self, timeout_s: float = 180) -> float:
        """Wait for the Node's Ready condition; returns how long it took."""
        started = time.monotonic()
        deadline = started + timeout_s
        last = ""
        while time.monotonic() < deadline:
            for server in self.servers:
                if not server.running():
                    raise TestbedError(
                        "start node", f"{server.name} exited; last log lines:\n{server.log_tail()}"
                    )
            result = run_kubectl(
                self.kubectl,
                self.kubeconfig,
                "get",
                "node",
                NODE_NAME,
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
                timeout=30,
            )
            last = result.stdout.strip() or result.stderr.strip()
            if last == "True":
                return time.monotonic() - started
            time.sleep(0.5)
        kubelet = next((s for s in self.servers if s.name == "kubelet"), None)
        raise TestbedError(
            "start node",
            f"node {NODE_NAME} not Ready after {timeout_s:.0f}s (last: {last}); kubelet log:\n"
            + (kubelet.log_tail() if kubelet else ""),
            "see the logs under " + str(self.node_dir / "logs"),
        )

    def start_watchdog(self, owner: int) -> None:
        """A detached process that removes the node if its owner dies, even by SIGKILL."""
        log = (self.node_dir / "logs" / "watchdog.log").open("ab")
        with log:
            self.watchdog = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "promptalias.testbed.node",
                    "watchdog",
                    str(owner),
                    str(self.node_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        """Stop kubelet first (no restarts), then containerd and the rest; then remove everything."""
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait(timeout=10)
            self.watchdog = None
        for server in sorted(self.servers, key=lambda s: s.name != "kubelet"):
            server.stop(grace_s=5)
        self.servers.clear()
        cleanup_node(self.node_dir)


def _watchdog(owner: int, node_dir: Path) -> None:
    while pid_alive(owner) and node_dir.exists():
        time.sleep(1)
    if node_dir.exists():
        say(f"owner {owner} is gone; removing its node in {node_dir}")
        cleanup_node(node_dir)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "watchdog":
        _watchdog(int(sys.argv[2]), Path(sys.argv[3]))
