"""One builder for every Go program the testbed needs: a wrapper module in, verified binaries out.

The control plane (hack/controlplane), the node (hack/node) and CoreDNS (hack/coredns) are each a
small Go module that pins what it builds. `GoModuleBuild.ensure()` runs `go build` for its targets
into $HOME/.cache/promptalias/<cache_name>/bin/, with a manifest.json of sha256 sums, the digest of
the module's files (a changed go.mod/go.sum/main.go means a rebuild) and the build times. A corrupt
or stale cache is rebuilt; two processes never build the same cache at once (a lock file).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from promptalias.testbed.errors import TestbedError
from promptalias.testbed.progress import say, step

ANCHOR_MODULE = Path("hack") / "controlplane"  # what marks a promptalias checkout


def cache_root() -> Path:
    return Path(os.environ.get("PROMPTALIAS_CACHE_DIR_ROOT", Path.home() / ".cache" / "promptalias"))


def find_source_root() -> Path:
    """The promptalias checkout that holds the hack/ Go modules (the builds need their go.mod/go.sum)."""
    candidates = []
    if env := os.environ.get("PROMPTALIAS_SOURCE_DIR"):
        candidates.append(Path(env))
    candidates += [Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents]
    for candidate in candidates:
        if (candidate / ANCHOR_MODULE / "go.mod").is_file():
            return candidate
    raise TestbedError(
        "locate hack/controlplane",
        "the Go module that builds the control plane was not found",
        "run from a promptalias checkout, set PROMPTALIAS_SOURCE_DIR to one, or set KUBEBUILDER_ASSETS "
        "to a directory holding kube-apiserver, kube-controller-manager, etcd and kubectl",
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        if not path.is_file() or not os.access(path, os.X_OK) or sums.get(name) != sha256_file(path):
            return False
    return True


@contextmanager
def locked(path: Path, what: str = "a cache") -> Iterator[None]:
    """Serialise builders: two test sessions must not build into the same cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another process is building {what}; waiting for {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")
    env.setdefault("GOFLAGS", "-mod=readonly")
    return env


def kubernetes_ldflags(version: str) -> str:
    """What `make` in kubernetes/kubernetes stamps into its commands (`kubectl version` reads it)."""
    minor = version.split(".")[1]
    return (
        f"-X k8s.io/component-base/version.gitVersion={version} "
        f"-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor={minor} "
        "-X k8s.io/component-base/version.gitTreeState=clean"
    )


@dataclass(frozen=True)
class GoTarget:
    """One binary: `go build -o bin/<name> <package>`, run in the module directory."""

    name: str
    package: str
    ldflags: str = ""
    tags: str = ""


def kubernetes_target(name: str, version: str) -> GoTarget:
    """A command of kubernetes/kubernetes (k8s.io/kubernetes/cmd/<name>), stamped with `version`."""
    # providerless drops the in-tree cloud providers a loopback plane and a test node never need
    return GoTarget(name, f"k8s.io/kubernetes/cmd/{name}", kubernetes_ldflags(version), "providerless")


@dataclass(frozen=True)
class GoModuleBuild:
    """The binaries of one wrapper module, cached by version + inputs digest under cache_root()."""

    what: str  # "control plane": in messages and as the failing step's name
    module: Path  # relative to the source root, e.g. hack/controlplane
    cache_name: str  # the cache directory under cache_root(), e.g. v1.35.4
    version_key: str  # the manifest key that holds `version`, e.g. k8sVersion
    version: str
    targets: tuple[GoTarget, ...]
    digest_seed: str  # hashed first, so a version bump alone invalidates the cache
    digest_files: tuple[str, ...] = ("go.mod", "go.sum")
    digest_names: bool = False  # hash each file's name before its bytes (the tools cache's key)
    manifest_extra: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    cold_hint: str = "cold: several minutes on 2 cores"
    remedy: str = "check Go >= 1.25 and access to the Go module proxy, then rerun"
    go_hint: str = "install Go >= 1.25 (e.g. `apt-get install golang`)"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(target.name for target in self.targets)

    @property
    def cache(self) -> Path:
        return cache_root() / self.cache_name

    def inputs_digest(self, module_dir: Path) -> str:
        """Changes whenever the wrapper module (and so the pinned sources) changes."""
        digest = hashlib.sha256(self.digest_seed.encode())
        for name in self.digest_files:
            if self.digest_names:
                digest.update(name.encode())
            digest.update((module_dir / name).read_bytes())
        return digest.hexdigest()[:16]

    def valid(self, inputs: str | None) -> bool:
        return manifest_valid(
            self.cache, inputs, version_key=self.version_key, version=self.version, names=self.names
        )

    def source_module(self) -> Path | None:
        """This build's module in the checkout, or None outside a checkout."""
        try:
            module_dir = find_source_root() / self.module
        except TestbedError:
            return None
        return module_dir if (module_dir / "go.mod").is_file() else None

    def ensure(self) -> Path:
        """The bin/ directory of a valid cache, building it only when no valid copy exists."""
        module_dir = self.source_module()
        inputs = self.inputs_digest(module_dir) if module_dir is not None else None
        if module_dir is None and not self.valid(None):
            raise TestbedError(
                f"build {self.what}",
                f"no valid cache in {self.cache} and no {self.module} module to build it from",
                "run from a promptalias checkout or set PROMPTALIAS_SOURCE_DIR to one",
            )
        if not self.valid(inputs):
            with locked(cache_root() / f".{self.cache_name}.lock", f"the {self.what}"):
                if not self.valid(inputs):  # another process may have built it while we waited
                    assert module_dir is not None
                    assert inputs is not None
                    if (self.cache / "manifest.json").exists():
                        say(f"cached {self.what} in {self.cache} is stale or corrupt; rebuilding")
                    self.build(module_dir, inputs)
        return self.cache / "bin"

    def build(self, module_dir: Path, inputs: str) -> None:
        go = shutil.which("go")
        if go is None:
            raise TestbedError(
                f"build {self.what}",
                "the Go toolchain (`go`) is not on PATH",
                self.go_hint,
            )
        cache = self.cache
        staging = cache.with_name(cache.name + f".tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bin").mkdir(parents=True)
        log_path = cache.parent / f"build-{self.cache_name}.log"
        env = {**go_env(), **self.env}
        say(
            f"building the {self.what} {self.version} from Go modules into {cache} "
            f"({self.cold_hint}; later runs reuse the cache)"
        )
        seconds: dict[str, float] = {}
        cpu_seconds: dict[str, float] = {}
        with log_path.open("w") as log:
            for index, target in enumerate(self.targets, start=1):
                argv = ["nice", "-n", "10", go, "build", "-trimpath"]
                if target.tags:
                    argv += ["-tags", target.tags]
                argv += ["-ldflags", f"-s -w {target.ldflags}".strip()]
                argv += ["-o", str(staging / "bin" / target.name), target.package]
                started, cpu_before = time.monotonic(), _children_cpu()
                with step(f"Building {target.name} ({index}/{len(self.targets)})"):
                    log.write(f"$ {' '.join(argv)}\n")
                    log.flush()
                    result = subprocess.run(
                        argv, cwd=module_dir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
                    )
                seconds[target.name] = round(time.monotonic() - started, 1)
                cpu_seconds[target.name] = round(_children_cpu() - cpu_before, 1)
                if result.returncode != 0:
                    shutil.rmtree(staging, ignore_errors=True)
                    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
                    raise TestbedError(
                        f"build {self.what}",
                        f"`go build {target.package}` exited with {result.returncode}; "
                        f"log {log_path}:\n{tail}",
                        self.remedy,
                    )
        manifest = {
            self.version_key: self.version,
            **self.manifest_extra,
            "inputs": inputs,
            "buildSeconds": seconds,
            "cpuSeconds": cpu_seconds,
            "sha256": {name: sha256_file(staging / "bin" / name) for name in self.names},
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        shutil.rmtree(cache, ignore_errors=True)
        staging.rename(cache)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
