"""Build (or reuse) the node programs: kubelet, kube-proxy, kube-scheduler, and CoreDNS.

Same Kubernetes release and pins as the control plane, but from their own wrapper module (hack/node)
and into their own cache ($HOME/.cache/promptalias/node-<version>/), so adding the node never
changes the control-plane cache's inputs. CoreDNS (the cluster's DNS) comes from hack/coredns, a
main package with only the plugins the node uses, cached in coredns-<version>/. Both are built and
verified by the shared Go builder (testbed/gobuild.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from promptalias.testbed.build import K8S_VERSION
from promptalias.testbed.gobuild import GoModuleBuild, GoTarget, cache_root, kubernetes_target

NODE_MODULE_DIR = Path("hack") / "node"
NODE_BINARIES = ("kube-scheduler", "kube-proxy", "kubelet")
COREDNS_MODULE_DIR = Path("hack") / "coredns"
COREDNS_VERSION = "v1.14.7"  # the release built against client-go v0.35.4 (hack/coredns/go.mod)

NODE = GoModuleBuild(
    what="node (kubelet, kube-proxy, kube-scheduler)",
    module=NODE_MODULE_DIR,
    cache_name=f"node-{K8S_VERSION}",
    version_key="k8sVersion",
    version=K8S_VERSION,
    targets=tuple(kubernetes_target(name, K8S_VERSION) for name in NODE_BINARIES),
    digest_seed=f"node {K8S_VERSION}",
    digest_files=("go.mod", "go.sum", "tools.go"),
    cold_hint="cold: ~5-10 min with the control plane's Go build cache warm, ~25 min without",
)

COREDNS = GoModuleBuild(
    what="CoreDNS",
    module=COREDNS_MODULE_DIR,
    cache_name=f"coredns-{COREDNS_VERSION}",
    version_key="corednsVersion",
    version=COREDNS_VERSION,
    targets=(GoTarget("coredns", "."),),
    digest_seed=f"coredns {COREDNS_VERSION}",
    digest_files=("go.mod", "go.sum", "main.go"),
    env={"CGO_ENABLED": "0"},  # static: the cached binary survives system library updates
    cold_hint="cold: ~3-6 min on 2 cores",
)


@dataclass(frozen=True)
class NodeBinaries:
    """Absolute paths of the node programs."""

    kubelet: Path
    kube_proxy: Path
    kube_scheduler: Path
    coredns: Path


def node_cache() -> Path:
    return cache_root() / NODE.cache_name


def ensure_node_binaries() -> NodeBinaries:
    """Return kubelet, kube-proxy, kube-scheduler and CoreDNS, building them only when needed."""
    bin_dir = NODE.ensure()
    return NodeBinaries(
        kubelet=bin_dir / "kubelet",
        kube_proxy=bin_dir / "kube-proxy",
        kube_scheduler=bin_dir / "kube-scheduler",
        coredns=COREDNS.ensure() / "coredns",
    )
