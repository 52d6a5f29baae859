"""Observability: log filter + contextvar, MLflow trace linking, optional Prometheus counter."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import promptalias
from promptalias.client import PromptStore, current_prompt
from promptalias.client import _observe as observe
from promptalias.projection.render import render_projection, serialize_document
from promptalias.sidecar.atomic import AtomicDirWriter

OPERATOR_DIR = str(Path(promptalias.__file__).resolve().parent.parent)


def _write(directory: Path, name: str, alias: str, version: int) -> None:
    doc = render_projection(
        name=name,
        alias=alias,
        version=version,
        template="hello {{x}}",
        response_format=None,
        model_config=None,
        tags={},
        updated="2025-01-01T00:00:00Z",
    )
    writer = AtomicDirWriter(str(directory))
    files = writer.read_current()
    files[f"{name}.{alias}.json"] = serialize_document(doc).encode()
    writer.write(files)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PromptStore]:
    _write(tmp_path / "p", "invoice-parser", "production", 3)
    _write(tmp_path / "p", "summarizer", "staging", 7)
    s = PromptStore(prompts_dir=str(tmp_path / "p"), cache_dir=None, watch=False, metrics=False)
    yield s
    s.close()


def test_log_filter_adds_prompt_fields(store: PromptStore) -> None:
    from promptalias.client import PromptLogFilter

    assert issubclass(PromptLogFilter, logging.Filter)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(PromptLogFilter())
    handler.setFormatter(
        logging.Formatter("%(prompt_name)s@%(prompt_alias)s v%(prompt_version)s %(message)s")
    )
    log = logging.getLogger("test_client_observe")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        seen: dict[str, Any] = {}

        def in_thread() -> None:
            log.info("before any load")
            seen["before"] = records[-1].prompt_name  # type: ignore[attr-defined]
            store.load("prompts:/summarizer@staging")
            log.info("in thread")
            seen["thread"] = handler.format(records[-1])

        store.load("prompts:/invoice-parser/production")
        log.info("parsed")
        assert handler.format(records[-1]) == "invoice-parser@production v3 parsed"
        worker = threading.Thread(target=in_thread)
        worker.start()
        worker.join()
        assert seen == {"before": None, "thread": "summarizer@staging v7 in thread"}
        log.info("still ours")
        assert records[-1].prompt_version == 3  # type: ignore[attr-defined]
        current = current_prompt()
        assert current is not None
        assert current.name == "invoice-parser"
    finally:
        log.removeHandler(handler)


def test_prometheus_counter_when_available(
    store: PromptStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # prometheus_client is optional and not installed here: a stand-in module records the calls.
    incs: dict[tuple[str, ...], int] = {}

    class Child:
        def __init__(self, labels: tuple[str, ...]) -> None:
            self.labels = labels

        def inc(self) -> None:
            incs[self.labels] = incs.get(self.labels, 0) + 1

    class Counter:
        def __init__(self, name: str, doc: str, labelnames: list[str]) -> None:
            assert name == "promptalias_client_prompt_loads"
            assert labelnames == ["name", "alias", "version", "arm"]

        def labels(self, *values: str) -> Child:
            return Child(values)

    fake = types.ModuleType("prometheus_client")
    fake.Counter = Counter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "prometheus_client", fake)
    monkeypatch.setattr(observe, "_COUNTER", None)
    counted = PromptStore(prompts_dir=str(tmp_path / "p"), cache_dir=None, watch=False)
    for _ in range(3):
        counted.load("prompts:/invoice-parser@production")
    counted.load("prompts:/summarizer@staging")
    assert incs == {("invoice-parser", "production", "3", ""): 3, ("summarizer", "staging", "7", ""): 1}
    monkeypatch.setenv("PROMPTALIAS_CLIENT_METRICS", "0")
    assert observe.prometheus_counter() is None


def test_no_counter_without_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # makes the import fail
    monkeypatch.setattr(observe, "_COUNTER", None)
    assert observe.prometheus_counter() is None


TRACE_PROBE = """
import json, os, sys
from promptalias.client import PromptStore
store = PromptStore(prompts_dir=sys.argv[1], cache_dir=None, watch=False, metrics=False)
store.load("prompts:/invoice-parser@production")
assert "mlflow" not in sys.modules  # the client never imports it
import mlflow
from mlflow.tracing.trace_manager import InMemoryTraceManager
out = {}
store.load("prompts:/invoice-parser@production")  # no active span: nothing recorded, nothing breaks
with mlflow.start_span("request") as span:
    store.load("prompts:/invoice-parser@production")
    store.load("prompts:/invoice-parser@production")
    store.load("prompts:/summarizer@staging")
    out["attributes"] = {k: span.get_attribute(k) for k in (
        "promptalias.name", "promptalias.alias", "promptalias.version", "promptalias.arm",
        "mlflow.linkedPrompts")}
    with InMemoryTraceManager.get_instance().get_trace(span.trace_id) as trace:
        out["trace_tag"] = trace.info.tags.get("mlflow.linkedPrompts")
        out["trace_prompts"] = [[p.name, int(p.version)] for p in trace.prompts]
print(json.dumps(out))
sys.stdout.flush()
os._exit(0)  # skip exporting the trace: only the in-memory link is under test
"""


def test_links_prompt_versions_to_the_active_mlflow_trace(store: PromptStore, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    # A clean environment: nothing a test session left in os.environ (MLFLOW_*, OTEL_*) may change
    # how the probe's MLflow traces.
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env |= {
        "PYTHONPATH": OPERATOR_DIR,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    proc = subprocess.run(
        [sys.executable, "-c", TRACE_PROBE, str(tmp_path / "p")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,  # a cold `import mlflow` on a loaded 2-core machine
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # The span shows the last prompt loaded in it; the trace links every version used.
    assert out["attributes"]["promptalias.name"] == "summarizer"
    assert out["attributes"]["promptalias.alias"] == "staging"
    assert out["attributes"]["promptalias.version"] == 7
    assert json.loads(out["attributes"]["mlflow.linkedPrompts"]) == [
        {"name": "invoice-parser", "version": "3"},
        {"name": "summarizer", "version": "7"},
    ]
    assert json.loads(out["trace_tag"]) == json.loads(out["attributes"]["mlflow.linkedPrompts"])
    assert out["trace_prompts"] == [["invoice-parser", 3], ["summarizer", 7]]
