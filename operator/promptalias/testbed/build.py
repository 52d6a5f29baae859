"""Build (or reuse) the control-plane binaries: kube-apiserver, kube-controller-manager, kubectl, etcd.

They are built with `go build` from the wrapper module in hack/controlplane (which pins the
k8s.io/kubernetes staging modules) and cached by version under $HOME/.cache/promptalias by the
shared Go builder (testbed/gobuild.py). A manifest of sha256 sums detects a corrupt or stale cache,
which is then rebuilt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from promptalias.testbed.errors import TestbedError
from promptalias.testbed.gobuild import (
    ANCHOR_MODULE,
    GoModuleBuild,
    GoTarget,
    cache_root,
    find_source_root,
    go_env,
    kubernetes_target,
    locked,
    manifest_valid,
    sha256_file,
)

__all__ = ["BINARIES", "CONTROL_PLANE", "K8S_VERSION", "Binaries", "cache_root", "ensure_binaries"]
__all__ += ["find_source_root", "manifest_valid"]

K8S_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.5"  # the etcd server release k8s.io/kubernetes v1.35.4 itself depends on
MODULE_DIR = ANCHOR_MODULE

# Older names, still imported by the other builders and the tests.
_sha256 = sha256_file
_locked = locked
_go_env = go_env


CONTROL_PLANE = GoModuleBuild(
    what="control plane",
    module=MODULE_DIR,
    cache_name=K8S_VERSION,
    version_key="k8sVersion",
    version=K8S_VERSION,
    targets=(
        GoTarget("etcd", "go.etcd.io/etcd/server/v3"),
        kubernetes_target("kube-apiserver", K8S_VERSION),
        kubernetes_target("kube-controller-manager", K8S_VERSION),
        kubernetes_target("kubectl", K8S_VERSION),
    ),
    digest_seed=K8S_VERSION,
    manifest_extra={"etcdVersion": ETCD_VERSION},
    cold_hint="cold: ~10-25 min on 2 cores",
    remedy="check Go >= 1.25 and access to the Go module proxy, then rerun; "
    "or set KUBEBUILDER_ASSETS to prebuilt binaries",
)
BINARIES = CONTROL_PLANE.names


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the control-plane programs."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path

    @property
    def bin_dir(self) -> Path:
        return self.kubectl.parent


def _cache_valid(cache: Path, inputs: str | None) -> bool:
    return manifest_valid(cache, inputs, version_key="k8sVersion", version=K8S_VERSION, names=BINARIES)


def _from_dir(directory: Path) -> dict[str, Path]:
    return {name: directory / name for name in BINARIES if (directory / name).is_file()}


def ensure_binaries() -> Binaries:
    """Return usable control-plane binaries, building them only when no valid copy exists.

    KUBEBUILDER_ASSETS (envtest's convention) wins for every binary it holds; the rest come from
    the version cache, which is verified by sha256 and rebuilt when stale or corrupt.
    """
    found: dict[str, Path] = {}
    if assets := os.environ.get("KUBEBUILDER_ASSETS"):
        found = _from_dir(Path(assets))
    if len(found) < len(BINARIES):
        for name, path in _from_dir(CONTROL_PLANE.ensure()).items():
            found.setdefault(name, path)
    missing = [name for name in BINARIES if name not in found]
    if missing:
        raise TestbedError(
            "find control plane binaries", f"missing {', '.join(missing)}", "unset KUBEBUILDER_ASSETS"
        )
    return Binaries(
        etcd=found["etcd"],
        kube_apiserver=found["kube-apiserver"],
        kube_controller_manager=found["kube-controller-manager"],
        kubectl=found["kubectl"],
    )
