"""Build (or reuse) the node programs: kubelet, kube-proxy and kube-scheduler.

Same release and pins as the control plane, but from their own wrapper module (hack/node) and into
their own cache ($HOME/.cache/promptalias/node-<version>/), so adding the node never changes the
control-plane cache's inputs. A manifest of sha256 sums detects a corrupt or stale cache.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from promptalias.testbed.build import (
    K8S_VERSION,
    _go_env,
    _locked,
    _sha256,
    cache_root,
    find_source_root,
    manifest_valid,
)
from promptalias.testbed.errors import TestbedError
from promptalias.testbed.progress import say, step

NODE_MODULE_DIR = Path("hack") / "node"
NODE_BINARIES = ("kube-scheduler", "kube-proxy", "kubelet")


@dataclass(frozen=True)
class NodeBinaries:
    """Absolute paths of the node programs."""

    kubelet: Path
    kube_proxy: Path
    kube_scheduler: Path


def node_cache() -> Path:
    return cache_root() / f"node-{K8S_VERSION}"


def _inputs_digest(module: Path) -> str:
    digest = hashlib.sha256(f"node {K8S_VERSION}".encode())
    for name in ("go.mod", "go.sum", "tools.go"):
        digest.update((module / name).read_bytes())
    return digest.hexdigest()[:16]


def _valid(cache: Path, inputs: str | None) -> bool:
    return manifest_valid(cache, inputs, version_key="k8sVersion", version=K8S_VERSION, names=NODE_BINARIES)


def _build(module: Path, cache: Path, inputs: str) -> None:
    go = shutil.which("go")
    if go is None:
        raise TestbedError(
            "build node binaries", "the Go toolchain (`go`) is not on PATH", "install Go >= 1.25"
        )
    staging = cache.with_name(cache.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    log_path = cache.parent / f"build-node-{K8S_VERSION}.log"
    minor = K8S_VERSION.split(".")[1]
    ldflags = (
        f"-s -w -X k8s.io/component-base/version.gitVersion={K8S_VERSION} "
        f"-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor={minor} "
        "-X k8s.io/component-base/version.gitTreeState=clean"
    )
    say(
        f"building the Kubernetes {K8S_VERSION} node (kubelet, kube-proxy, kube-scheduler) into {cache} "
        "(cold: ~10-15 min on 2 cores; later runs reuse the cache)"
    )
    timings: dict[str, float] = {}
    with log_path.open("w") as log:
        for index, name in enumerate(NODE_BINARIES, start=1):
            package = f"k8s.io/kubernetes/cmd/{name}"
            argv = ["nice", "-n", "10", go, "build", "-trimpath", "-tags", "providerless"]
            argv += ["-ldflags", ldflags, "-o", str(staging / "bin" / name), package]
            started = time.monotonic()
            with step(f"Building {name} ({index}/{len(NODE_BINARIES)})"):
                log.write(f"$ {' '.join(argv)}\n")
                log.flush()
                result = subprocess.run(
                    argv, cwd=module, env=_go_env(), stdout=log, stderr=subprocess.STDOUT, check=False
                )
            timings[name] = round(time.monotonic() - started, 1)
            if result.returncode != 0:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
                raise TestbedError(
                    "build node binaries",
                    f"`go build {package}` exited with {result.returncode}; log {log_path}:\n{tail}",
                    "check Go >= 1.25 and access to the Go module proxy, then rerun",
                )
    manifest = {
        "k8sVersion": K8S_VERSION,
        "inputs": inputs,
        "buildSeconds": timings,
        "sha256": {name: _sha256(staging / "bin" / name) for name in NODE_BINARIES},
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(cache, ignore_errors=True)
    staging.rename(cache)


def ensure_node_binaries() -> NodeBinaries:
    """Return kubelet, kube-proxy and kube-scheduler, building them only when no valid copy exists."""
    cache = node_cache()
    module: Path | None = None
    inputs: str | None = None
    try:
        module = find_source_root() / NODE_MODULE_DIR
        inputs = _inputs_digest(module)
    except (TestbedError, OSError):
        if not _valid(cache, None):
            raise
    if not _valid(cache, inputs):
        with _locked(cache_root() / f".node-{K8S_VERSION}.lock"):
            if not _valid(cache, inputs):
                if module is None or inputs is None:
                    raise TestbedError("build node binaries", "no source module", "run from a checkout")
                if (cache / "manifest.json").exists():
                    say(f"cached node binaries in {cache} are stale or corrupt; rebuilding")
                _build(module, cache, inputs)
    bin_dir = cache / "bin"
    return NodeBinaries(
        kubelet=bin_dir / "kubelet",
        kube_proxy=bin_dir / "kube-proxy",
        kube_scheduler=bin_dir / "kube-scheduler",
    )
