"""Container images for the testbed's node, built without a container engine or registry.

- base: `debootstrap --variant=minbase` of Debian bookworm + python3/python3-venv, packed as a
  single-layer image (buildah `FROM scratch` + `ADD rootfs.tar /`).
- promptalias: the project's own Dockerfile built by buildah (chroot isolation, vfs storage: no
  daemon, no overlay-in-overlay) with `--build-arg PYTHON_IMAGE=<the local base>`, named as the
  chart's default `image.repository:appVersion`, so `helm install` with default values works.
- pause: a static C program (`gcc -static`), the sandbox image containerd is configured with.
- invoice-app: examples/invoice-parser/Dockerfile on top of the promptalias image.

Each image is exported as a docker-archive under $HOME/.cache/promptalias/images/, keyed by a
digest of everything it is built from; a manifest records its sha256, size and build time, and a
later run with the same inputs reuses the archive without running buildah at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from promptalias.testbed.build import _locked, _sha256, cache_root, find_source_root
from promptalias.testbed.errors import TestbedError
from promptalias.testbed.node import PAUSE_IMAGE
from promptalias.testbed.progress import say, step

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_IMAGE = "localhost/promptalias-base"
APP_IMAGE = "localhost/promptalias/invoice-app:latest"

PAUSE_C = r"""
/* The pod sandbox's init: sleep until told to stop, reap children. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction term = {.sa_handler = stop}, chld = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  sigaction(SIGINT, &term, NULL);
  sigaction(SIGTERM, &term, NULL);
  sigaction(SIGCHLD, &chld, NULL);
  for (;;) pause();
  return 0;
}
"""


@dataclass(frozen=True)
class BuiltImage:
    """One image archive, ready for `ctr images import`."""

    name: str
    archive: Path
    size_bytes: int
    build_seconds: float
    cached: bool


def images_dir() -> Path:
    return cache_root() / "images"


def chart_image_name(source: Path) -> str:
    """The chart's default image reference: image.repository + appVersion (image.tag is empty)."""
    chart = source / "charts" / "promptalias"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    tag = values["image"].get("tag") or meta["appVersion"]
    return f"{values['image']['repository']}:{tag}"


def _buildah(*args: str, log: Path, cwd: Path | None = None) -> str:
    store = images_dir() / "buildah"
    argv = [
        "nice",
        "-n",
        "10",
        "buildah",
        f"--root={store / 'root'}",
        f"--runroot={store / 'run'}",
        "--storage-driver=vfs",
        *args,
    ]
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(argv)}\n")
        handle.flush()
        result = subprocess.run(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=handle, text=True, check=False, timeout=3600
        )
        handle.write(result.stdout)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise TestbedError(
            "build images", f"`buildah {args[0]}` exited with {result.returncode}; log {log}:\n{tail}"
        )
    return result.stdout


def _bud(context: Path, tag: str, log: Path, *options: str) -> None:
    """Build the Containerfile/Dockerfile in `context` as `tag` (chroot isolation: no daemon).

    No --layers: with vfs every cached layer is a full copy of the rootfs (~0.9 GB per metadata-only
    step); the archive cache (`_built_once`) already skips unchanged builds.
    """
    _buildah("bud", "--isolation=chroot", *options, "-t", tag, ".", log=log, cwd=context)


def _host_trust() -> list[str]:
    """Let RUN steps use the host's pip config and CA bundle (a TLS-intercepting proxy's CA, say)
    as build-time mounts: they are not committed into the image."""
    mounts = []
    for path in {"/etc/pip.conf", os.environ.get("PIP_CERT", ""), os.environ.get("SSL_CERT_FILE", "")}:
        if path and Path(path).is_file():
            mounts.append(f"--volume={path}:{path}:ro")
    return sorted(mounts)


def _cached(key: str, stem: str) -> BuiltImage | None:
    meta_path = images_dir() / f"{stem}-{key}.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    archive = images_dir() / meta["archive"]
    if not archive.is_file() or _sha256(archive) != meta["sha256"]:
        return None
    return BuiltImage(meta["name"], archive, meta["sizeBytes"], meta["buildSeconds"], cached=True)


def _export(name: str, key: str, stem: str, started: float, log: Path) -> BuiltImage:
    archive = images_dir() / f"{stem}-{key}.tar"
    archive.unlink(missing_ok=True)
    _buildah("push", name, f"docker-archive:{archive}:{name}", log=log)
    # a docker-archive holds the layers uncompressed: its size is the image's size on the node
    built = BuiltImage(name, archive, archive.stat().st_size, round(time.monotonic() - started, 1), False)
    meta = {
        "name": name,
        "archive": archive.name,
        "sha256": _sha256(archive),
        "sizeBytes": built.size_bytes,
        "buildSeconds": built.build_seconds,
    }
    (images_dir() / f"{stem}-{key}.json").write_text(json.dumps(meta, indent=2))
    return built


def _built_once(name: str, key: str, stem: str, build: Callable[[Path], None], log: Path) -> BuiltImage:
    """The cached archive for `key`, else `build` the image `name` in a fresh context directory and
    export it (to the archive the next run with the same key reuses)."""
    if (hit := _cached(key, stem)) is not None:
        return hit
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
        build(Path(tmp))
    return _export(name, key, stem, started, log)


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _tree_bytes(root: Path, relative: list[str]) -> bytes:
    """Names and contents of the build context's files (what .dockerignore lets through)."""
    chunks = []
    for rel in relative:
        path = root / rel
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            chunks.append(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
    return b"\0\0".join(chunks)


def _base(log: Path) -> tuple[str, str]:
    """The local Debian + python3 base image (in buildah's store); returns (reference, key)."""
    key = _digest(DEBIAN_SUITE.encode(), " ".join(BASE_PACKAGES).encode(), b"v1")
    reference = f"{BASE_IMAGE}:{key}"
    probe = subprocess.run(
        [
            "buildah",
            f"--root={images_dir() / 'buildah' / 'root'}",
            f"--runroot={images_dir() / 'buildah' / 'run'}",
            "--storage-driver=vfs",
            "inspect",
            "--type=image",
            reference,
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        return reference, key
    rootfs_tar = images_dir() / f"base-rootfs-{key}.tar"
    if not rootfs_tar.is_file():
        with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
            rootfs = Path(tmp) / "rootfs"
            with step(f"debootstrap {DEBIAN_SUITE} minbase + {', '.join(BASE_PACKAGES)} (cold: ~1-10 min)"):
                argv = [
                    "nice",
                    "-n",
                    "10",
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    DEBIAN_SUITE,
                    str(rootfs),
                    DEBIAN_MIRROR,
                ]
                with log.open("a") as handle:
                    result = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, check=False)
                if result.returncode != 0:
                    raise TestbedError("build base image", f"debootstrap failed; see {log}")
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for item in (rootfs / junk).glob("*"):
                    if item.is_file():
                        item.unlink()
            partial = rootfs_tar.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
            partial.rename(rootfs_tar)
    with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
        context = Path(tmp)
        os.link(rootfs_tar, context / "rootfs.tar")
        (context / "Containerfile").write_text(
            'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["python3"]\n'
        )
        with step("Building the base image (Debian minbase + python3)"):
            _bud(context, reference, log)
    return reference, key


def _operator(source: Path, base: str, base_key: str, log: Path) -> BuiltImage:
    name = chart_image_name(source)
    context_files = ["pyproject.toml", "README.md", "operator"]
    key = _digest(
        base_key.encode(),
        (source / "Dockerfile").read_bytes(),
        (source / ".dockerignore").read_bytes(),
        _tree_bytes(source, context_files),
    )

    def build(context: Path) -> None:
        for rel in context_files:
            src = source / rel
            if src.is_dir():
                shutil.copytree(src, context / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, context / rel)
        shutil.copy2(source / "Dockerfile", context / "Dockerfile")
        shutil.copy2(source / ".dockerignore", context / ".dockerignore")
        with step(f"Building {name} from the Dockerfile with buildah (cold: several minutes)"):
            _bud(context, name, log, "--pull-never", *_host_trust(), f"--build-arg=PYTHON_IMAGE={base}")

    return _built_once(name, key, "promptalias", build, log)


def _pause(log: Path) -> BuiltImage:
    key = _digest(PAUSE_C.encode(), PAUSE_IMAGE.encode())

    def build(context: Path) -> None:
        (context / "pause.c").write_text(PAUSE_C)
        subprocess.run(
            ["gcc", "-static", "-Os", "-s", "-o", str(context / "pause"), str(context / "pause.c")],
            check=True,
        )
        (context / "Containerfile").write_text(
            'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n'
        )
        _bud(context, PAUSE_IMAGE, log)

    return _built_once(PAUSE_IMAGE, key, "pause", build, log)


def _app(source: Path, operator: BuiltImage, log: Path) -> BuiltImage:
    example = source / "examples" / "invoice-parser"
    key = _digest(
        operator.archive.name.encode(),
        (example / "Dockerfile").read_bytes(),
        (example / "app.py").read_bytes(),
    )

    def build(context: Path) -> None:
        shutil.copy2(example / "Dockerfile", context / "Dockerfile")
        shutil.copy2(example / "app.py", context / "app.py")
        _bud(context, APP_IMAGE, log, "--pull-never", f"--build-arg=BASE={operator.name}")

    return _built_once(APP_IMAGE, key, "invoice-app", build, log)


@dataclass(frozen=True)
class NodeImages:
    pause: BuiltImage
    promptalias: BuiltImage
    app: BuiltImage

    def all(self) -> tuple[BuiltImage, ...]:
        return (self.pause, self.promptalias, self.app)


def ensure_images(source: Path | None = None) -> NodeImages:
    """Build (or reuse from the digest-keyed cache) the pause, promptalias and invoice-app images."""
    source = source or find_source_root()
    images_dir().mkdir(parents=True, exist_ok=True)
    log = images_dir() / "build.log"
    with _locked(cache_root() / ".images.lock"):
        pause = _pause(log)
        key_probe = _cached_operator_only(source)
        if key_probe is not None:
            operator = key_probe
        else:
            base, base_key = _base(log)
            operator = _operator(source, base, base_key, log)
        app = _app(source, operator, log)
        if not all(image.cached for image in (pause, operator, app)):
            # build stages and dangling layers: with vfs each is a full rootfs copy on disk
            _buildah("rmi", "--prune", log=log)
    for image in (pause, operator, app):
        if not image.cached:
            say(f"built {image.name}: {image.size_bytes / 1e6:.0f} MB in {image.build_seconds:.0f}s")
    return NodeImages(pause, operator, app)


def _cached_operator_only(source: Path) -> BuiltImage | None:
    """The operator archive for these inputs, if cached (skips even the base image check)."""
    base_key = _digest(DEBIAN_SUITE.encode(), " ".join(BASE_PACKAGES).encode(), b"v1")
    key = _digest(
        base_key.encode(),
        (source / "Dockerfile").read_bytes(),
        (source / ".dockerignore").read_bytes(),
        _tree_bytes(source, ["pyproject.toml", "README.md", "operator"]),
    )
    return _cached(key, "promptalias")
