"""ProjectionState: last good document per key, conflicts, full listings; AtomicDirWriter layout."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from promptalias.projection.render import render_projection, serialize_document
from promptalias.sidecar.atomic import AtomicDirWriter, InvalidKeyError
from promptalias.sidecar.state import ProjectionState, etag_of


def doc(name: str, alias: str, version: int, **extra: Any) -> str:
    return serialize_document(
        render_projection(
            name=name,
            alias=alias,
            version=version,
            template=f"v{version}",
            response_format=None,
            model_config=None,
            tags={},
            updated="2025-01-01T00:00:00Z",
            **extra,
        )
    )


def versions(state: ProjectionState) -> dict[str, int]:
    return {key: entry.version for key, entry in state.merged.items()}


def test_apply_and_keep_last_good() -> None:
    state = ProjectionState()
    assert state.apply("configmap/a", {"p.prod.json": doc("p", "prod", 1)}, "10")
    assert versions(state) == {"p.prod.json": 1}
    assert not state.apply("configmap/a", {"p.prod.json": doc("p", "prod", 1)}, "11")  # same bytes
    for bad in ["{not json", json.dumps({"schema": 2}), doc("q", "prod", 2), doc("p", "staging", 2)]:
        assert not state.apply("configmap/a", {"p.prod.json": bad}, "12")
        assert versions(state) == {"p.prod.json": 1}
    assert state.invalid_total == 4
    assert state.apply("configmap/a", {"p.prod.json": doc("p", "prod", 2)}, "13")
    assert versions(state) == {"p.prod.json": 2}


def test_new_invalid_key_is_not_served_and_other_keys_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    state = ProjectionState()
    state.apply("configmap/a", {"p.prod.json": "{", "README": "hi", "q.prod.json": doc("q", "prod", 3)}, "1")
    assert versions(state) == {"q.prod.json": 3}
    state.apply("configmap/a", {"p.prod.json": "{", "README": "hi", "q.prod.json": doc("q", "prod", 3)}, "1")
    assert len([r for r in caplog.records if "p.prod.json" in r.getMessage()]) == 1  # reported once


def test_conflicts_resolve_by_origin_name() -> None:
    state = ProjectionState()
    state.apply("configmap/b", {"p.prod.json": doc("p", "prod", 2)}, "1")
    state.apply("configmap/a", {"p.prod.json": doc("p", "prod", 1)}, "2")
    assert state.merged["p.prod.json"].origin == "configmap/a"
    assert state.remove("configmap/a")
    assert versions(state) == {"p.prod.json": 2}
    assert not state.remove("configmap/zzz")


def test_replace_removes_what_a_listing_no_longer_has() -> None:
    state = ProjectionState()
    state.apply("configmap/a", {"a.prod.json": doc("a", "prod", 1)}, "1")
    state.apply("configmap/b", {"b.prod.json": doc("b", "prod", 1)}, "1")
    state.apply("~preloaded", {"c.prod.json": doc("c", "prod", 1)})
    changed = state.replace(
        {"configmap/a", "configmap/b"}, {"configmap/a": ({"a.prod.json": doc("a", "prod", 2)}, "5")}
    )
    assert changed
    assert versions(state) == {"a.prod.json": 2, "c.prod.json": 1}  # outside the scope: untouched
    assert not state.replace({"configmap/a"}, {"configmap/a": ({"a.prod.json": doc("a", "prod", 2)}, "5")})


def test_entry_helpers() -> None:
    experiment = {"candidate": {"alias": "exp", "version": 9, "template": "t"}, "weight": 5, "key": None}
    state = ProjectionState()
    state.apply("configmap/a", {"p.prod.json": doc("p", "prod", 3, experiment=experiment)}, "1")
    entry = state.merged["p.prod.json"]
    assert (entry.name, entry.alias, entry.version) == ("p", "prod", 3)
    assert entry.carries_version(3)
    assert entry.carries_version(9)
    assert not entry.carries_version(4)
    assert entry.etag == etag_of(entry.raw)
    assert entry.etag.startswith('"')


def test_atomic_writer_layout(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    writer = AtomicDirWriter(str(directory))
    assert writer.write({"a.json": b"1", "b.json": b"2"})
    first = os.readlink(directory / "..data")
    assert first.startswith("..2")
    assert os.readlink(directory / "a.json") == "..data/a.json"
    assert (directory / "a.json").read_bytes() == b"1"
    assert oct((directory / "a.json").stat().st_mode & 0o777) == "0o644"
    assert not writer.write({"a.json": b"1", "b.json": b"2"})  # no-op
    assert os.readlink(directory / "..data") == first

    (directory / "foreign.txt").write_text("not ours")
    assert writer.write({"a.json": b"3"})
    assert os.readlink(directory / "..data") != first
    assert (directory / "a.json").read_bytes() == b"3"
    assert not (directory / "b.json").exists()  # stale link removed
    assert (directory / "foreign.txt").read_text() == "not ours"
    timestamped = [p for p in directory.iterdir() if p.name.startswith("..") and not p.is_symlink()]
    assert len(timestamped) == 1  # the previous version's directory is gone
    assert writer.read_current() == {"a.json": b"3"}

    assert writer.write({})
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["..data", os.readlink(directory / "..data"), "foreign.txt"]
    )


def test_atomic_writer_cleans_up_after_a_crash(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    writer = AtomicDirWriter(str(directory))
    writer.write({"a.json": b"1"})
    (directory / "..2020_01_01_00_00_00.000000001").mkdir()  # left by a crash mid-write
    os.symlink("..2020_01_01_00_00_00.000000001", directory / "..data_tmp")
    writer.write({"a.json": b"2"})
    leftovers = sorted(p.name for p in directory.iterdir() if p.name.startswith(".."))
    assert leftovers == sorted(["..data", os.readlink(directory / "..data")])


@pytest.mark.parametrize("key", ["", "..data", "a/b", "..x", "."])
def test_atomic_writer_refuses_bad_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        AtomicDirWriter(str(tmp_path)).write({key: b"x"})
