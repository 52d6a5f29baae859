"""Build (or reuse) the control-plane binaries: kube-apiserver, kube-controller-manager, kubectl, etcd.

They are built with `go build` from the wrapper module in hack/controlplane (which pins the
k8s.io/kubernetes staging modules) and cached by version under $HOME/.cache/promptalias. A manifest
of sha256 sums detects a corrupt or stale cache, which is then rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from promptalias.testbed.errors import TestbedError
from promptalias.testbed.progress import say, step

K8S_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.5"  # the etcd server release k8s.io/kubernetes v1.35.4 itself depends on
MODULE_DIR = Path("hack") / "controlplane"

# name -> (go package, whether it is a Kubernetes command: version ldflags + `providerless` tag)
_TARGETS: dict[str, tuple[str, bool]] = {
    "etcd": ("go.etcd.io/etcd/server/v3", False),
    "kube-apiserver": ("k8s.io/kubernetes/cmd/kube-apiserver", True),
    "kube-controller-manager": ("k8s.io/kubernetes/cmd/kube-controller-manager", True),
    "kubectl": ("k8s.io/kubernetes/cmd/kubectl", True),
}
BINARIES = tuple(_TARGETS)


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


def cache_root() -> Path:
    return Path(os.environ.get("PROMPTALIAS_CACHE_DIR_ROOT", Path.home() / ".cache" / "promptalias"))


def find_source_root() -> Path:
    """The promptalias checkout that holds hack/controlplane (the build needs its go.mod/go.sum)."""
    candidates = []
    if env := os.environ.get("PROMPTALIAS_SOURCE_DIR"):
        candidates.append(Path(env))
    candidates += [Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents]
    for candidate in candidates:
        if (candidate / MODULE_DIR / "go.mod").is_file():
            return candidate
    raise TestbedError(
        "locate hack/controlplane",
        "the Go module that builds the control plane was not found",
        "run from a promptalias checkout, set PROMPTALIAS_SOURCE_DIR to one, or set KUBEBUILDER_ASSETS "
        "to a directory holding kube-apiserver, kube-controller-manager, etcd and kubectl",
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _inputs_digest(module: Path) -> str:
    """Changes whenever the wrapper module (and so the pinned sources) changes."""
    digest = hashlib.sha256(K8S_VERSION.encode())
    for name in ("go.mod", "go.sum"):
        digest.update((module / name).read_bytes())
    return digest.hexdigest()[:16]


def manifest_valid(
    cache: Path, inputs: str | None, *, version_key: str, version: str, names: tuple[str, ...]
) -> bool:
    """A cache directory (bin/ + manifest.json) holds intact binaries built from `inputs`."""
    try:
        manifest = json.loads((cache / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get(version_key) != version:
        return False
    if inputs is not None and manifest.get("inputs") != inputs:
        return False
    sums: dict[str, str] = manifest.get("sha256", {})
    for name in names:
        path = cache / "bin" / name
        if not path.is_file() or not os.access(path, os.X_OK) or sums.get(name) != _sha256(path):
            return False
    return True


def _cache_valid(cache: Path, inputs: str | None) -> bool:
    return manifest_valid(cache, inputs, version_key="k8sVersion", version=K8S_VERSION, names=BINARIES)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise builders: two test sessions must not build into the same cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another process is building the control plane; waiting for {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")
    env.setdefault("GOFLAGS", "-mod=readonly")
    return env


def _build(module: Path, cache: Path, inputs: str) -> None:
    go = shutil.which("go")
    if go is None:
        raise TestbedError(
            "build control plane",
            "the Go toolchain (`go`) is not on PATH",
            "install Go >= 1.25 (e.g. `apt-get install golang`), "
            "or set KUBEBUILDER_ASSETS to prebuilt binaries",
        )
    staging = cache.with_name(cache.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    log_path = cache.parent / f"build-{K8S_VERSION}.log"
    minor = K8S_VERSION.split(".")[1]
    version_flags = (
        f"-X k8s.io/component-base/version.gitVersion={K8S_VERSION} "
        f"-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor={minor} "
        "-X k8s.io/component-base/version.gitTreeState=clean"
    )
    say(
        f"building the Kubernetes {K8S_VERSION} control plane from Go modules into {cache} "
        "(cold: ~5-10 min on 2 cores; later runs reuse the cache)"
    )
    with log_path.open("w") as log:
        for index, (name, (package, versioned)) in enumerate(_TARGETS.items(), start=1):
            argv = [go, "build", "-trimpath"]
            if versioned:  # providerless drops the in-tree cloud providers a loopback plane never needs
                argv += ["-tags", "providerless", "-ldflags", f"-s -w {version_flags}"]
            else:
                argv += ["-ldflags", "-s -w"]
            argv += ["-o", str(staging / "bin" / name), package]
            with step(f"Building {name} ({index}/{len(_TARGETS)})"):
                log.write(f"$ {' '.join(argv)}\n")
                log.flush()
                result = subprocess.run(
                    argv, cwd=module, env=_go_env(), stdout=log, stderr=subprocess.STDOUT, check=False
                )
            if result.returncode != 0:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
                raise TestbedError(
                    "build control plane",
                    f"`go build {package}` exited with {result.returncode}; log {log_path}:\n{tail}",
                    "check Go >= 1.25 and access to the Go module proxy, then rerun; "
                    "or set KUBEBUILDER_ASSETS to prebuilt binaries",
                )
    manifest = {
        "k8sVersion": K8S_VERSION,
        "etcdVersion": ETCD_VERSION,
        "inputs": inputs,
        "sha256": {name: _sha256(staging / "bin" / name) for name in BINARIES},
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(cache, ignore_errors=True)
    staging.rename(cache)


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
        cache = cache_root() / K8S_VERSION
        module = None
        inputs = None
        try:
            module = find_source_root() / MODULE_DIR
            inputs = _inputs_digest(module)
        except TestbedError:
            if not _cache_valid(cache, None):
                raise
        if not _cache_valid(cache, inputs):
            with _locked(cache_root() / f".{K8S_VERSION}.lock"):
                if not _cache_valid(cache, inputs):
                    if module is None or inputs is None:
                        raise TestbedError("build control plane", "no source module", "see above")
                    if (cache / "manifest.json").exists():
                        say(f"cached control plane in {cache} is stale or corrupt; rebuilding")
                    _build(module, cache, inputs)
        for name, path in _from_dir(cache / "bin").items():
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
