"""PromptStore over real files in kubelet's `..data` layout (no network: the sidecar and MLflow
sources are covered by tests/integration/test_sidecar*.py)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from promptalias.client import (
    CANDIDATE,
    InvalidPromptURIError,
    Prompt,
    PromptNotFoundError,
    PromptStore,
    current_prompt,
)
from promptalias.client._document import document_from_model_version, parse_document
from promptalias.projection.render import render_projection, serialize_document
from promptalias.sidecar.atomic import AtomicDirWriter


def _doc(version: int, *, name: str = "invoice-parser", alias: str = "production", **extra: Any) -> bytes:
    doc = render_projection(
        name=name,
        alias=alias,
        version=version,
        template=f"v{version}: {{{{invoice}}}}",
        response_format=None,
        model_config={"temperature": 0},
        tags={},
        updated="2025-01-01T00:00:00Z",
        **extra,
    )
    return serialize_document(doc).encode()


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    return tmp_path / "prompts"


@pytest.fixture
def writer(prompts_dir: Path) -> AtomicDirWriter:
    return AtomicDirWriter(str(prompts_dir))


@pytest.fixture
def store(prompts_dir: Path, tmp_path: Path) -> Any:
    s = PromptStore(
        prompts_dir=str(prompts_dir), cache_dir=str(tmp_path / "cache"), watch=False, metrics=False
    )
    yield s
    s.close()


def test_loads_from_projected_files(writer: AtomicDirWriter, store: PromptStore) -> None:
    writer.write({"invoice-parser.production.json": _doc(3)})
    prompt = store.load("prompts:/invoice-parser/production")
    assert prompt is not None
    assert (prompt.name, prompt.alias, prompt.version, prompt.source) == (
        "invoice-parser",
        "production",
        3,
        "files",
    )
    assert prompt.format(invoice="X") == "v3: X"
    # Every spelling of the same reference is the same cached object.
    assert store.load("prompts:/invoice-parser@production") is prompt
    assert store.load("invoice-parser", "production") is prompt
    assert current_prompt() is prompt


def test_change_is_picked_up_and_old_object_stays_valid(writer: AtomicDirWriter, store: PromptStore) -> None:
    writer.write({"invoice-parser.production.json": _doc(3)})
    v3 = store.load("prompts:/invoice-parser@production")
    writer.write({"invoice-parser.production.json": _doc(4)})
    assert store.load("prompts:/invoice-parser@production") is v3  # no refresh on the request path
    store.check_files()
    v4 = store.load("prompts:/invoice-parser@production")
    assert v4 is not None
    assert v4.version == 4
    assert v3 is not None
    assert v3.version == 3
    assert v3.format(invoice="X") == "v3: X"


def test_unchanged_content_keeps_the_same_object(writer: AtomicDirWriter, store: PromptStore) -> None:
    writer.write({"invoice-parser.production.json": _doc(3)})
    first = store.load("prompts:/invoice-parser@production")
    writer.write(
        {"invoice-parser.production.json": _doc(3), "other.x.json": _doc(1, name="other", alias="x")}
    )
    store.check_files()
    assert store.load("prompts:/invoice-parser@production") is first


def test_corrupt_file_is_ignored_and_logged_once(
    prompts_dir: Path, writer: AtomicDirWriter, store: PromptStore, caplog: pytest.LogCaptureFixture
) -> None:
    writer.write({"invoice-parser.production.json": _doc(3)})
    store.load("prompts:/invoice-parser@production")
    caplog.set_level(logging.WARNING, logger="promptalias.client")
    for corrupt in (b'{"schema": 1, "name": "invoice-pa', b"\x00\xff not json"):
        writer.write({"invoice-parser.production.json": corrupt})
        store.check_files()
        store.check_files()
        prompt = store.load("prompts:/invoice-parser@production")
        assert prompt is not None
        assert prompt.version == 3
    warnings = [r for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(warnings) == 2  # once per bad content, not once per check
    assert "still serving version 3" in warnings[0].getMessage()
    # A document whose digest does not match its template is refused too.
    tampered = json.loads(_doc(4))
    tampered["template"] = "something else"
    writer.write({"invoice-parser.production.json": json.dumps(tampered).encode()})
    store.check_files()
    assert store.load("prompts:/invoice-parser@production").version == 3
    writer.write({"invoice-parser.production.json": _doc(5)})
    store.check_files()
    assert store.load("prompts:/invoice-parser@production").version == 5


def test_file_for_another_prompt_under_the_key_is_ignored(
    writer: AtomicDirWriter, store: PromptStore
) -> None:
    writer.write({"invoice-parser.production.json": _doc(3)})
    store.load("prompts:/invoice-parser@production")
    writer.write({"invoice-parser.production.json": _doc(9, name="evil")})
    store.check_files()
    assert store.load("prompts:/invoice-parser@production").version == 3


def test_vanished_file_keeps_serving(writer: AtomicDirWriter, store: PromptStore) -> None:
    writer.write({"invoice-parser.production.json": _doc(3)})
    store.load("prompts:/invoice-parser@production")
    writer.write({})
    store.check_files()
    store.refresh_fallbacks()  # no other source: keeps what it has
    assert store.load("prompts:/invoice-parser@production").version == 3
    writer.write({"invoice-parser.production.json": _doc(4)})
    store.check_files()
    assert store.load("prompts:/invoice-parser@production").version == 4


def test_plain_files_without_data_link(prompts_dir: Path, store: PromptStore) -> None:
    prompts_dir.mkdir()
    path = prompts_dir / "invoice-parser.production.json"
    path.write_bytes(_doc(3))
    assert store.load("prompts:/invoice-parser@production").version == 3
    tmp = prompts_dir / ".tmp"
    tmp.write_bytes(_doc(4))
    os.replace(tmp, path)
    store.check_files()
    assert store.load("prompts:/invoice-parser@production").version == 4


def test_not_found_names_every_source(tmp_path: Path) -> None:
    store = PromptStore(
        prompts_dir=str(tmp_path / "missing"), cache_dir=str(tmp_path / "cache"), watch=False, metrics=False
    )
    with pytest.raises(PromptNotFoundError) as info:
        store.load("prompts:/nope@production")
    message = str(info.value)
    assert "prompts:/nope@production" in message
    assert f"files {tmp_path / 'missing'}: " in message
    assert f"cache {tmp_path / 'cache'}: no last-known-good copy" in message
    assert [source for source, _ in info.value.attempts] == [
        f"files {tmp_path / 'missing'}",
        f"cache {tmp_path / 'cache'}",
    ]
    assert store.load("prompts:/nope@production", allow_missing=True) is None
    with pytest.raises(InvalidPromptURIError):
        store.load("nope")


def test_last_known_good_copy_survives_a_restart(
    prompts_dir: Path, writer: AtomicDirWriter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = str(tmp_path / "cache")
    writer.write({"invoice-parser.production.json": _doc(3)})
    first = PromptStore(prompts_dir=str(prompts_dir), cache_dir=cache, watch=False, metrics=False)
    first.load("prompts:/invoice-parser@production")
    first.load("prompts:/invoice-parser/3")
    writer.write({})  # the projection is gone, and there is no other source
    caplog.set_level(logging.WARNING, logger="promptalias.client")
    second = PromptStore(prompts_dir=str(prompts_dir), cache_dir=cache, watch=False, metrics=False)
    prompt = second.load("prompts:/invoice-parser@production")
    assert prompt is not None
    assert (prompt.version, prompt.source) == (3, "cache")
    assert any("last-known-good" in r.getMessage() for r in caplog.records)
    pinned = second.load("prompts:/invoice-parser/3")
    assert pinned is not None
    assert (pinned.version, pinned.alias, pinned.source) == (3, None, "cache")
    # When the projection comes back, the store returns to it.
    writer.write({"invoice-parser.production.json": _doc(4)})
    second.check_files()
    assert second.load("prompts:/invoice-parser@production").source == "files"


def test_unwritable_cache_is_a_warning_not_an_error(
    writer: AtomicDirWriter, prompts_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    writer.write({"invoice-parser.production.json": _doc(3)})
    store = PromptStore(
        prompts_dir=str(prompts_dir), cache_dir=str(blocker / "sub"), watch=False, metrics=False
    )
    caplog.set_level(logging.WARNING, logger="promptalias.client")
    assert store.load("prompts:/invoice-parser@production").version == 3
    assert any("PROMPTALIAS_CACHE_DIR" in r.getMessage() for r in caplog.records)


def test_pinned_version_found_in_projections(writer: AtomicDirWriter, store: PromptStore) -> None:
    experiment = {
        "candidate": {"alias": "experimental-parser", "version": 4, "template": "v4 {{invoice}}"},
        "weight": 10,
        "key": "user",
    }
    writer.write({"invoice-parser.production.json": _doc(3, experiment=experiment)})
    v3 = store.load("prompts:/invoice-parser/3")
    v4 = store.load("invoice-parser", 4)
    assert v3 is not None
    assert v4 is not None
    assert (v3.version, v3.alias, v3.uri, v3.arm) == (3, None, "prompts:/invoice-parser/3", None)
    assert (v4.version, v4.format(invoice="i")) == (4, "v4 i")
    with pytest.raises(PromptNotFoundError, match="carries version 5"):
        store.load("prompts:/invoice-parser/5")


def test_experiment_routes_by_key(writer: AtomicDirWriter, store: PromptStore) -> None:
    experiment = {
        "candidate": {"alias": "experimental-parser", "version": 4, "template": "v4 {{invoice}}"},
        "weight": 25,
        "key": "user",
    }
    writer.write({"invoice-parser.production.json": _doc(3, experiment=experiment)})
    baseline = store.load("prompts:/invoice-parser@production")
    assert baseline is not None
    assert (baseline.arm, baseline.version, baseline.experiment_weight) == ("baseline", 3, 25)
    arms = [store.load("prompts:/invoice-parser@production", key=f"user-{i}") for i in range(2000)]
    share = sum(1 for p in arms if p is not None and p.arm == CANDIDATE) / len(arms)
    assert 0.2 < share < 0.3
    for i in range(50):  # sticky
        key = f"user-{i}"
        assert store.load("prompts:/invoice-parser@production", key=key) is arms[i]
    assert current_prompt() is arms[49]


def test_watcher_thread_picks_up_changes_fast(
    prompts_dir: Path, writer: AtomicDirWriter, tmp_path: Path
) -> None:
    writer.write({"invoice-parser.production.json": _doc(1)})
    store = PromptStore(
        prompts_dir=str(prompts_dir), cache_dir=str(tmp_path / "c"), poll_interval=0.01, metrics=False
    )
    try:
        assert store.load("prompts:/invoice-parser@production").version == 1
        latencies = []
        for version in range(2, 12):
            writer.write({"invoice-parser.production.json": _doc(version)})
            start = time.monotonic()
            while store.load("prompts:/invoice-parser@production").version != version:
                assert time.monotonic() - start < 10.0, "the watcher never saw the change"
                time.sleep(0.001)
            latencies.append(time.monotonic() - start)
        # How fast is measured by `make bench` (client section); here: every change is seen.
        assert len(latencies) == 10
        assert {t.name for t in threading.enumerate()} >= {"promptalias-files", "promptalias-refresh"}
    finally:
        store.close()
    assert not any(t.is_alive() for t in store._threads)


def test_readers_never_see_a_partial_file(prompts_dir: Path, writer: AtomicDirWriter, tmp_path: Path) -> None:
    big = "x" * 200_000
    docs = [
        serialize_document(
            render_projection(
                name="p",
                alias="a",
                version=v,
                template=big + str(v),
                response_format=None,
                model_config=None,
                tags={},
                updated="2025-01-01T00:00:00Z",
            )
        ).encode()
        for v in (1, 2)
    ]
    writer.write({"p.a.json": docs[0]})
    stop = threading.Event()
    errors: list[BaseException] = []

    def read_loop() -> None:
        path = prompts_dir / "p.a.json"
        while not stop.is_set():
            try:
                parse_document(path.read_bytes())
            except FileNotFoundError:
                continue  # the old directory went away between readlink and open: a retry sees the new
            except BaseException as exc:
                errors.append(exc)

    readers = [threading.Thread(target=read_loop) for _ in range(2)]
    for t in readers:
        t.start()
    for i in range(200):
        writer.write({"p.a.json": docs[i % 2]})
    stop.set()
    for t in readers:
        t.join()
    assert errors == []


def test_document_from_mlflow_model_version() -> None:
    model_version = {
        "name": "invoice-parser",
        "version": "3",
        "last_updated_timestamp": 1735689600000,
        "tags": [
            {"key": "mlflow.prompt.is_prompt", "value": "true"},
            {"key": "mlflow.prompt.text", "value": json.dumps([{"role": "user", "content": "{{q}}"}])},
            {"key": "_mlflow_prompt_type", "value": "chat"},
            {"key": "_mlflow_prompt_model_config", "value": '{"temperature": 0.5}'},
            {"key": "_mlflow_prompt_response_format", "value": '{"type": "object"}'},
            {"key": "approved", "value": "true"},
        ],
    }
    doc = document_from_model_version(model_version, alias="production")
    assert doc["version"] == 3
    assert doc["template"] == [{"role": "user", "content": "{{q}}"}]
    assert doc["model_config"] == {"temperature": 0.5}
    assert doc["response_format"] == {"type": "object"}
    assert doc["tags"] == {"approved": "true"}
    assert doc["updated"] == "2025-01-01T00:00:00Z"
    assert doc["uri"] == "prompts:/invoice-parser@production"
    pinned = document_from_model_version(model_version, alias=None)
    assert pinned["uri"] == "prompts:/invoice-parser/3"
    with pytest.raises(ValueError, match="not a prompt"):
        document_from_model_version({"name": "model", "version": "1", "tags": []}, alias="a")


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "PROMPTALIAS_PROMPTS_DIR": str(tmp_path / "p"),
        "PROMPTALIAS_SIDECAR_URL": "http://127.0.0.1:8718",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        "PROMPTALIAS_CACHE_DIR": str(tmp_path / "c"),
        "PROMPTALIAS_POLL_INTERVAL": "0.5",
        "PROMPTALIAS_REFRESH_INTERVAL": "bogus",
    }
    store = PromptStore.from_env(env)
    assert repr(store) == (
        f"PromptStore(files {tmp_path / 'p'}, sidecar http://127.0.0.1:8718, mlflow http://127.0.0.1:5000, "
        f"cache {tmp_path / 'c'})"
    )
    assert store.poll_interval == 0.5
    assert store.refresh_interval == 10.0
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = PromptStore.from_env({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert default.files is not None
    assert default.files.directory == "/var/run/promptalias/prompts"
    assert default.cache is not None
    assert default.cache.directory == str(tmp_path / "xdg" / "promptalias" / "prompts")
    assert PromptStore.from_env({"MLFLOW_TRACKING_URI": "databricks"}).mlflow is None


def test_prompt_objects_are_shared_not_copied(writer: AtomicDirWriter, store: PromptStore) -> None:
    writer.write({"invoice-parser.production.json": _doc(3)})
    prompts = {id(store.load("prompts:/invoice-parser@production")) for _ in range(100)}
    assert len(prompts) == 1
    assert isinstance(store.load("prompts:/invoice-parser@production"), Prompt)


def test_forked_child_keeps_refreshing(prompts_dir: Path, writer: AtomicDirWriter, tmp_path: Path) -> None:
    # gunicorn --preload / multiprocessing: threads do not survive fork; the store restarts its own.
    writer.write({"invoice-parser.production.json": _doc(1)})
    store = PromptStore(prompts_dir=str(prompts_dir), cache_dir=None, poll_interval=0.01, metrics=False)
    try:
        assert store.load("prompts:/invoice-parser@production").version == 1
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: wait for the parent's change, report what it sees
            os.close(read_fd)
            deadline = time.monotonic() + 5
            seen = 1
            while time.monotonic() < deadline and seen != 2:
                seen = store.load("prompts:/invoice-parser@production").version
                time.sleep(0.005)
            os.write(write_fd, str(seen).encode())
            os._exit(0)
        os.close(write_fd)
        time.sleep(0.1)
        writer.write({"invoice-parser.production.json": _doc(2)})
        with os.fdopen(read_fd) as pipe:
            assert pipe.read() == "2"
        os.waitpid(pid, 0)
    finally:
        store.close()
