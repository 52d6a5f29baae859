"""The shared Go builder: cache layout, inputs digests (unchanged by the refactor), verification."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from promptalias.testbed import build, gobuild, nodebuild
from promptalias.testbed.errors import TestbedError

REPO = Path(__file__).resolve().parents[2]


def _legacy_digest(seed: str, module: Path, files: tuple[str, ...]) -> str:
    digest = hashlib.sha256(seed.encode())
    for name in files:
        digest.update((module / name).read_bytes())
    return digest.hexdigest()[:16]


def test_control_plane_and_node_keep_their_cache_keys() -> None:
    # the digests the two builders computed before they shared code: existing caches stay valid
    plane, node_module = REPO / "hack" / "controlplane", REPO / "hack" / "node"
    assert build.CONTROL_PLANE.inputs_digest(plane) == _legacy_digest("v1.35.4", plane, ("go.mod", "go.sum"))
    assert nodebuild.NODE.inputs_digest(node_module) == _legacy_digest(
        "node v1.35.4", node_module, ("go.mod", "go.sum", "tools.go")
    )
    assert build.CONTROL_PLANE.cache_name == "v1.35.4"
    assert nodebuild.NODE.cache_name == "node-v1.35.4"
    assert build.BINARIES == ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")


def test_coredns_version_is_the_one_the_module_pins() -> None:
    go_mod = (REPO / "hack" / "coredns" / "go.mod").read_text()
    assert re.search(
        rf"^require github.com/coredns/coredns {re.escape(nodebuild.COREDNS_VERSION)}$", go_mod, re.M
    )
    assert "k8s.io/client-go v0.35.4" in go_mod  # the node's Kubernetes release
    assert nodebuild.COREDNS.cache_name == f"coredns-{nodebuild.COREDNS_VERSION}"


def _fake_module(tmp_path: Path) -> Path:
    module = tmp_path / "src" / "hack" / "fake"
    module.mkdir(parents=True)
    (module / "go.mod").write_text("module fake\n")
    (module / "go.sum").write_text("")
    (tmp_path / "src" / "hack" / "controlplane").mkdir(parents=True)
    (tmp_path / "src" / "hack" / "controlplane" / "go.mod").write_text("module anchor\n")
    return module


FAKE = gobuild.GoModuleBuild(
    what="fake",
    module=Path("hack") / "fake",
    cache_name="fake-v1",
    version_key="fakeVersion",
    version="v1",
    targets=(gobuild.GoTarget("one", "./one"), gobuild.GoTarget("two", "./two")),
    digest_seed="fake v1",
)


def test_a_built_cache_is_verified_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _fake_module(tmp_path)
    monkeypatch.setenv("PROMPTALIAS_SOURCE_DIR", str(tmp_path / "src"))
    monkeypatch.setenv("PROMPTALIAS_CACHE_DIR_ROOT", str(tmp_path / "cache"))
    calls: list[str] = []

    def fake_build(self: gobuild.GoModuleBuild, module_dir: Path, inputs: str) -> None:
        calls.append(inputs)
        (self.cache / "bin").mkdir(parents=True, exist_ok=True)
        sums = {}
        for name in self.names:
            path = self.cache / "bin" / name
            path.write_text(f"#!/bin/sh\necho {name}\n")
            path.chmod(0o755)
            sums[name] = gobuild.sha256_file(path)
        manifest = {self.version_key: self.version, "inputs": inputs, "sha256": sums}
        (self.cache / "manifest.json").write_text(json.dumps(manifest))

    monkeypatch.setattr(gobuild.GoModuleBuild, "build", fake_build)
    bin_dir = FAKE.ensure()
    assert bin_dir == tmp_path / "cache" / "fake-v1" / "bin"
    assert FAKE.ensure() == bin_dir
    assert len(calls) == 1  # the second call reused the verified cache
    (bin_dir / "two").write_text("corrupt")
    FAKE.ensure()
    assert len(calls) == 2  # a corrupt binary is rebuilt
    (module / "go.sum").write_text("changed\n")
    FAKE.ensure()
    assert len(calls) == 3  # so are changed inputs
    assert calls[2] != calls[0]


def test_missing_go_names_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_module(tmp_path)
    monkeypatch.setenv("PROMPTALIAS_SOURCE_DIR", str(tmp_path / "src"))
    monkeypatch.setenv("PROMPTALIAS_CACHE_DIR_ROOT", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(TestbedError, match="build fake"):
        FAKE.ensure()
    assert not (tmp_path / "cache" / "fake-v1").exists()


def test_tools_keep_their_cache_key() -> None:
    from promptalias.testbed import tools

    module = REPO / "hack" / "tools"
    digest = hashlib.sha256(tools.TOOLS_VERSION.encode())
    for name in ("go.mod", "go.sum", "kstatus/main.go"):  # the key tools.py computed on its own
        digest.update(name.encode())
        digest.update((module / name).read_bytes())
    assert tools._inputs_digest(module) == digest.hexdigest()[:16]
    assert tools.tools_cache().name == f"tools-{tools.TOOLS_VERSION}"
    assert tools.TOOLS_BUILD.names == ("helm", "kstatus")
