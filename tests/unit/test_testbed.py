"""Pure parts of the testbed: cache validation, orphan reaping, error messages."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from promptalias.testbed import build, procs
from promptalias.testbed.errors import TestbedError


def _fake_cache(root: Path) -> Path:
    cache = root / build.K8S_VERSION
    (cache / "bin").mkdir(parents=True)
    sums = {}
    for name in build.BINARIES:
        path = cache / "bin" / name
        path.write_bytes(f"#!/bin/sh\necho {name}\n".encode())
        path.chmod(0o755)
        sums[name] = build._sha256(path)
    manifest = {"k8sVersion": build.K8S_VERSION, "inputs": "abc", "sha256": sums}
    (cache / "manifest.json").write_text(json.dumps(manifest))
    return cache


def test_valid_cache_is_reused(tmp_path: Path) -> None:
    cache = _fake_cache(tmp_path)
    assert build._cache_valid(cache, "abc")
    assert build._cache_valid(cache, None)


def test_cache_built_from_other_inputs_is_stale(tmp_path: Path) -> None:
    assert not build._cache_valid(_fake_cache(tmp_path), "changed-go-sum")


def test_corrupt_binary_invalidates_the_cache(tmp_path: Path) -> None:
    cache = _fake_cache(tmp_path)
    with (cache / "bin" / "kube-apiserver").open("ab") as handle:
        handle.write(b"\0garbage")
    assert not build._cache_valid(cache, "abc")


def test_missing_binary_or_manifest_invalidates_the_cache(tmp_path: Path) -> None:
    cache = _fake_cache(tmp_path)
    (cache / "bin" / "etcd").unlink()
    assert not build._cache_valid(cache, "abc")
    (cache / "manifest.json").write_text("{not json")
    assert not build._cache_valid(cache, "abc")


def test_kubebuilder_assets_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _fake_cache(tmp_path / "cache")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(cache / "bin"))
    found = build.ensure_binaries()
    assert found.kube_apiserver == cache / "bin" / "kube-apiserver"


def test_missing_go_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "src" / build.MODULE_DIR
    module.mkdir(parents=True)
    (module / "go.mod").write_text("module x\n")
    (module / "go.sum").write_text("")
    monkeypatch.setenv("PROMPTALIAS_SOURCE_DIR", str(tmp_path / "src"))
    monkeypatch.setenv("PROMPTALIAS_CACHE_DIR_ROOT", str(tmp_path / "cache"))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(TestbedError) as error:
        build.ensure_binaries()
    assert "build control plane" in str(error.value)
    assert "`go`" in str(error.value)
    assert "what to do" in str(error.value)


def test_orphaned_servers_are_reaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procs, "RUN_ROOT", tmp_path)
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    run_dir = tmp_path / f"{procs.RUN_PREFIX}dead"
    run_dir.mkdir()
    dead_owner = subprocess.Popen(["true"])
    dead_owner.wait()
    procs.write_owner(run_dir, dead_owner.pid, [sleeper.pid])
    live_dir = tmp_path / f"{procs.RUN_PREFIX}live"
    live_dir.mkdir()
    procs.write_owner(live_dir, os.getpid(), [])

    assert procs.reap_orphans() == [run_dir]
    sleeper.wait(timeout=5)
    assert not run_dir.exists()
    assert live_dir.exists()


def test_server_that_dies_reports_its_log(tmp_path: Path) -> None:
    server = procs.Server("broken", ["sh", "-c", "echo boom: bad flag; exit 3"], tmp_path / "broken.log")
    server.start()
    started = time.monotonic()
    with pytest.raises(TestbedError) as error:
        server.wait_ready(lambda: False, 30, "fix the flag")
    assert time.monotonic() - started < 25  # noticed the exit, did not wait out the 30 s
    assert "exited with code 3" in str(error.value)
    assert "boom: bad flag" in str(error.value)
    assert "fix the flag" in str(error.value)
