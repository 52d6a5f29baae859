"""The sidecar as a real process against the real testbed apiserver: ConfigMap → files + HTTP → client."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kubernetes import client

from kit import metric_total
from promptalias.client import PromptStore
from promptalias.projection.render import build_configmap, projection_key, render_projection
from promptalias.sidecar.atomic import AtomicDirWriter
from promptalias.sidecar.testing import SidecarProcess
from promptalias.testbed import Testbed
from sidecar_kit import owned

pytestmark = pytest.mark.integration


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Poll until `predicate()` is truthy; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.002)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def configmap(
    namespace: str, prompt: str, alias: str, version: int, template: str | None = None, **extra: Any
) -> dict[str, Any]:
    doc = render_projection(
        name=prompt,
        alias=alias,
        version=version,
        template=template if template is not None else f"v{version} says {{{{text}}}}",
        response_format=None,
        model_config={"temperature": 0.1},
        tags={"team": "billing"},
        updated="2025-01-01T00:00:00Z",
        **extra,
    )
    body = build_configmap(namespace, f"{prompt}-{alias}", "00000000-0000-0000-0000-000000000000", doc)
    # The owner is set by `apply` (sidecar_kit.owned): a real PromptAlias, so the GC keeps it.
    del body["metadata"]["ownerReferences"]
    return body


def apply(core: client.CoreV1Api, body: dict[str, Any]) -> None:
    body = owned(core, body)  # the sidecar trusts only projections owned by a PromptAlias
    meta = body["metadata"]
    try:
        core.replace_namespaced_config_map(meta["name"], meta["namespace"], body)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(meta["namespace"], body)


def reads(
    store: PromptStore, version: int, uri: str = "prompts:/invoice-parser/production"
) -> Callable[[], bool]:
    def check() -> bool:
        prompt = store.load(uri)
        return prompt is not None and prompt.version == version

    return check


def file_version(directory: Path, key: str) -> int | None:
    try:
        return int(json.loads((directory / key).read_bytes())["version"])
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture
def core(k8s_api: Any, crds: Path) -> client.CoreV1Api:
    return client.CoreV1Api(k8s_api)


@pytest.fixture
def start_sidecar(
    testbed: Testbed, tmp_path: Path, namespace: str
) -> Iterator[Callable[..., SidecarProcess]]:
    started: list[SidecarProcess] = []

    def start(
        *extra: str, directory: Path | None = None, env: dict[str, str] | None = None
    ) -> SidecarProcess:
        args = ["--namespace", namespace, "--dir", str(directory or tmp_path / "prompts"), *extra]
        sidecar = SidecarProcess(
            args,
            env={**testbed.env(), **(env or {})},
            log=tmp_path / f"sidecar-{len(started)}.log",
        )
        started.append(sidecar.start())
        return sidecar

    yield start
    for sidecar in started:
        sidecar.stop()
        print(f"--- {sidecar.log}\n{sidecar.logs()}")


def test_configmap_reaches_files_http_and_client(
    core: client.CoreV1Api, namespace: str, tmp_path: Path, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    prompts = tmp_path / "prompts"
    key = projection_key("invoice-parser", "production")
    apply(core, configmap(namespace, "invoice-parser", "production", 1))
    # Not ours (no managed-by label): never projected.
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "unrelated"}, "data": {"other.x.json": "{}"}}
    )
    sidecar = start_sidecar()
    sidecar.wait_ready()
    assert file_version(prompts, key) == 1
    # kubelet's layout: key -> ..data/key, ..data -> ..<timestamp>
    assert os.readlink(prompts / key) == f"..data/{key}"
    assert os.readlink(prompts / "..data").startswith("..")
    assert not (prompts / "other.x.json").exists()

    status, headers, body = sidecar.get("/prompts/invoice-parser/production")
    assert status == 200
    assert json.loads(body)["version"] == 1
    etag = headers["etag"]
    assert sidecar.get("/prompts/invoice-parser/production", {"If-None-Match": etag})[0] == 304
    assert sidecar.get("/prompts/invoice-parser/1")[0] == 200  # by version
    assert sidecar.get("/prompts/invoice-parser/staging")[0] == 404
    index = json.loads(sidecar.get("/prompts")[2])
    assert [(p["name"], p["alias"], p["version"]) for p in index["prompts"]] == [
        ("invoice-parser", "production", 1)
    ]

    store = PromptStore(prompts_dir=str(prompts), sidecar_url=sidecar.url, cache_dir=None, poll_interval=0.01)
    try:
        assert store.load("prompts:/invoice-parser/production").version == 1

        # A long-poll waiting on the current ETag wakes when the ConfigMap changes.
        result: dict[str, Any] = {}

        def long_poll() -> None:
            result["response"] = sidecar.get(
                "/prompts/invoice-parser/production?wait=20", {"If-None-Match": etag}, timeout=30
            )
            result["at"] = time.monotonic()

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(0.3)
        assert poller.is_alive()  # still waiting: nothing changed yet
        latencies = []
        for version in range(2, 12):
            apply(core, configmap(namespace, "invoice-parser", "production", version))
            written = time.monotonic()
            latencies.append(wait_until(reads(store, version), 8, f"the client to read version {version}"))
            if version == 2:
                poller.join(10)
                status, _, body = result["response"]
                assert status == 200
                assert json.loads(body)["version"] >= 2
                assert result["at"] - written < 10.0  # woken by the change, not its 20 s wait
        latencies.sort()
        print(
            f"ConfigMap write → client read: median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
            f"max {latencies[-1] * 1000:.1f} ms"
        )
        assert file_version(prompts, key) == 11
        prompt = store.load("prompts:/invoice-parser@production")
        assert prompt is not None
        assert prompt.format(text="hi") == "v11 says hi"
    finally:
        store.close()

    metrics = sidecar.get("/metrics")[2].decode()
    assert "promptalias_sidecar_writes_total" in metrics
    assert (
        'promptalias_sidecar_watch_events_total{source="configmaps[app.kubernetes.io/managed-by=promptalias]",type="MODIFIED"}'
        in metrics
    )
    assert "promptalias_sidecar_ready 1" in metrics
    assert sidecar.get("/healthz")[0] == 200


def test_only_projections_owned_by_a_promptalias_are_trusted(
    core: client.CoreV1Api, namespace: str, tmp_path: Path, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    """Anyone who may create ConfigMaps can set the managed-by label; the sidecar must not serve it."""
    prompts = tmp_path / "prompts"
    apply(core, configmap(namespace, "invoice-parser", "production", 1))
    forged = configmap(namespace, "evil", "production", 6)  # labelled like a projection, no owner
    core.create_namespaced_config_map(namespace, forged)
    # An owner reference to a real PromptAlias, but not that PromptAlias's projection name.
    renamed = configmap(namespace, "mimic", "production", 7)
    renamed["metadata"]["ownerReferences"] = owned(
        core, configmap(namespace, "invoice-parser", "production", 1)
    )["metadata"]["ownerReferences"]
    core.create_namespaced_config_map(namespace, renamed)
    sidecar = start_sidecar()
    sidecar.wait_ready()
    assert file_version(prompts, projection_key("invoice-parser", "production")) == 1
    assert sorted(p.name for p in prompts.iterdir() if not p.name.startswith("..")) == [
        projection_key("invoice-parser", "production")
    ]
    for name in ("evil", "mimic"):
        status, _, _ = sidecar.get(f"/prompts/{name}/production")
        assert status == 404
    _, _, metrics = sidecar.get("/metrics")
    assert "promptalias_sidecar_untrusted_configmaps 2" in metrics.decode()
    # Labelled later, on a watch event: still ignored; the real projection keeps flowing.
    forged["data"] = configmap(namespace, "evil", "production", 8)["data"]
    core.replace_namespaced_config_map(forged["metadata"]["name"], namespace, forged)
    apply(core, configmap(namespace, "invoice-parser", "production", 2))
    wait_until(
        lambda: file_version(prompts, projection_key("invoice-parser", "production")) == 2,
        30,
        "the owned projection's next version on disk",
    )
    status, _, _ = sidecar.get("/prompts/evil/production")
    assert status == 404
    assert "no controller ownerReference to a PromptAlias" in sidecar.logs()


def test_client_through_sidecar_http_only(
    core: client.CoreV1Api, namespace: str, tmp_path: Path, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    apply(core, configmap(namespace, "summarizer", "staging", 5))
    sidecar = start_sidecar()
    sidecar.wait_ready()
    store = PromptStore(prompts_dir=None, sidecar_url=sidecar.url, cache_dir=str(tmp_path / "cache"))
    try:
        first = store.load("prompts:/summarizer@staging")
        assert first is not None
        assert (first.version, first.source) == (5, "sidecar")
        pinned = store.load("prompts:/summarizer/5")
        assert pinned is not None
        assert (pinned.version, pinned.alias) == (5, None)
        time.sleep(0.2)  # let the client's long-poll settle on the current index
        apply(core, configmap(namespace, "summarizer", "staging", 6))
        # Within 8 s: the client's own re-resolve runs every 10 s, so only the long-poll explains it.
        took = wait_until(
            lambda: store.load("prompts:/summarizer@staging").version == 6,
            8,
            "the long-poll refresh",
        )
        print(f"ConfigMap write → client read over sidecar HTTP: {took * 1000:.1f} ms")
    finally:
        store.close()


def test_corrupt_configmap_is_ignored(
    core: client.CoreV1Api, namespace: str, tmp_path: Path, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    prompts = tmp_path / "prompts"
    key = projection_key("invoice-parser", "production")
    good = configmap(namespace, "invoice-parser", "production", 1)
    apply(core, good)
    sidecar = start_sidecar()
    sidecar.wait_ready()
    etag = sidecar.get("/prompts/invoice-parser/production")[1]["etag"]

    bad_documents = [
        '{"schema": 1, "name": "invoice-parser", "alias": "prod',  # truncated
        json.dumps({**json.loads(good["data"][key]), "template": "tampered"}),  # digest mismatch
        json.dumps({**json.loads(good["data"][key]), "alias": "staging"}),  # wrong key for its content
    ]
    for bad in bad_documents:
        apply(core, {**good, "data": {key: bad}})
    # The sidecar has seen the bad writes when the invalid counter says so; nothing else changed.
    wait_until(
        lambda: "promptalias_sidecar_invalid_documents_total 3" in sidecar.get("/metrics")[2].decode(),
        10,
        "the sidecar to refuse three bad documents",
    )
    assert file_version(prompts, key) == 1
    status, headers, body = sidecar.get("/prompts/invoice-parser/production")
    assert (status, headers["etag"], json.loads(body)["version"]) == (200, etag, 1)
    assert "invalid" in sidecar.logs()

    apply(core, configmap(namespace, "invoice-parser", "production", 2))
    wait_until(lambda: file_version(prompts, key) == 2, 10, "the next good version")


def test_restart_resumes_and_catches_up(
    core: client.CoreV1Api, namespace: str, tmp_path: Path, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    prompts = tmp_path / "prompts"
    a, b = projection_key("a", "prod"), projection_key("b", "prod")
    apply(core, configmap(namespace, "a", "prod", 1))
    apply(core, configmap(namespace, "b", "prod", 1))
    first = start_sidecar()
    first.wait_ready()
    assert (file_version(prompts, a), file_version(prompts, b)) == (1, 1)
    assert first.stop() == 0  # SIGTERM: a clean exit

    # While it is down: the files stay (apps keep reading them), and the cluster moves on.
    apply(core, configmap(namespace, "a", "prod", 2))
    core.delete_namespaced_config_map("promptalias-b-prod", namespace)
    assert (file_version(prompts, a), file_version(prompts, b)) == (1, 1)

    second = start_sidecar()
    # Before its first sync it already answers from the files the last run left.
    wait_until(lambda: second.status_of("/prompts/a/prod") == 200, 10, "the restarted sidecar to answer")
    second.wait_ready()
    wait_until(lambda: file_version(prompts, a) == 2, 10, "the change made while down")
    assert not (prompts / b).exists()
    assert second.get("/prompts/b/prod")[0] == 404
    # Only one timestamped directory remains.
    assert (
        len([p for p in prompts.iterdir() if p.name.startswith("..") and p.is_dir() and not p.is_symlink()])
        == 1
    )

    apply(core, configmap(namespace, "a", "prod", 3))
    wait_until(lambda: file_version(prompts, a) == 3, 10, "changes after the restart")


def test_large_configmap_and_deletion(
    core: client.CoreV1Api, namespace: str, tmp_path: Path, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    prompts = tmp_path / "prompts"
    sidecar = start_sidecar()
    sidecar.wait_ready()
    big = "x" * 900_000  # one watch event line of ~900 KB: far beyond aiohttp's 64 KiB line limit
    apply(core, configmap(namespace, "big", "prod", 1, template=big + " {{text}}"))
    key = projection_key("big", "prod")
    wait_until(lambda: file_version(prompts, key) == 1, 10, "the large projection")
    assert json.loads((prompts / key).read_bytes())["template"].startswith(big)
    core.delete_namespaced_config_map("promptalias-big-prod", namespace)
    wait_until(lambda: not (prompts / key).exists(), 10, "the file to go with its ConfigMap")
    assert sidecar.get("/prompts/big/prod")[0] == 404
    assert sidecar.get("/healthz")[0] == 200


class _Recorder(http.server.BaseHTTPRequestHandler):
    posts: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).posts.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_notify_url_is_debounced(
    core: client.CoreV1Api, namespace: str, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    _Recorder.posts = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/reload"
        sidecar = start_sidecar("--notify-url", url, "--notify-debounce", "0.5")
        sidecar.wait_ready()
        for i in range(5):
            apply(core, configmap(namespace, f"p{i}", "prod", 1))
        expected = [f"p{i}.prod.json" for i in range(5)]

        def changed() -> list[str]:
            return sorted(key for post in list(_Recorder.posts) for key in post["changed"])

        wait_until(lambda: changed() == expected, 10, "notifications naming all five changes")
        assert len(_Recorder.posts) <= 2  # a burst of five changes: one or two reloads, not five
        assert 'promptalias_sidecar_notifications_total{result="sent"}' in sidecar.get("/metrics")[2].decode()
    finally:
        server.shutdown()


def test_notify_signal(
    core: client.CoreV1Api, namespace: str, tmp_path: Path, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    marker = tmp_path / "signals"
    app = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            f"signal.signal(signal.SIGUSR1, lambda *_: open({str(marker)!r}, 'a').write('usr1\\n'))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == b"ready"
        sidecar = start_sidecar("--notify-signal", f"{app.pid}:USR1", "--notify-debounce", "0.1")
        sidecar.wait_ready()
        apply(core, configmap(namespace, "p", "prod", 1))
        wait_until(lambda: marker.exists() and "usr1" in marker.read_text(), 10, "the signal")
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait()


def test_file_mode_follows_a_mounted_configmap(tmp_path: Path) -> None:
    mounted, out = tmp_path / "mounted", tmp_path / "out"
    kubelet = AtomicDirWriter(str(mounted))  # what kubelet does to a ConfigMap volume
    body = configmap("ns", "invoice-parser", "production", 1)
    key = projection_key("invoice-parser", "production")
    kubelet.write({key: body["data"][key].encode()})
    with SidecarProcess(
        ["--from-dir", str(mounted), "--dir", str(out), "--poll-interval", "0.05"],
        log=tmp_path / "sidecar.log",
    ) as sidecar:
        sidecar.wait_ready()
        assert file_version(out, key) == 1
        assert json.loads(sidecar.get("/prompts/invoice-parser/production")[2])["version"] == 1
        kubelet.write({key: configmap("ns", "invoice-parser", "production", 2)["data"][key].encode()})
        wait_until(lambda: file_version(out, key) == 2, 5, "the mounted update")
        kubelet.write({key: b"{corrupt"})
        wait_until(
            lambda: metric_total(
                sidecar.get("/metrics")[2].decode(), "promptalias_sidecar_invalid_documents_total"
            ),
            5,
            "the sidecar to see the corrupt document",
        )
        assert json.loads(sidecar.get("/prompts/invoice-parser/production")[2])["version"] == 2
        assert sidecar.get("/healthz")[0] == 200
        print(sidecar.logs())
