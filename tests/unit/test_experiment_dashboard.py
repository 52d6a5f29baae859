"""The Grafana dashboard for experiments queries metrics the code exports, with their labels."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "examples" / "grafana" / "promptalias-experiments.json"
SOURCES = [
    REPO / "operator" / "promptalias" / "client" / "_observe.py",
    REPO / "operator" / "promptalias" / "handlers" / "metrics.py",
    REPO / "operator" / "promptalias" / "handlers" / "experiment_analysis.py",
    REPO / "operator" / "promptalias" / "sidecar" / "metrics.py",
]
# Metrics used by the dashboard but not exported yet (panels using them must say "proposed").
PROPOSED: set[str] = set()
METRIC = re.compile(r"\b(promptalias_[a-z_]+)\b")
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


def exported() -> set[str]:
    names: set[str] = set()
    for source in SOURCES:
        for name in METRIC.findall(source.read_text()):
            names.add(name)
            if not name.endswith(SUFFIXES):
                # prometheus_client appends _total to counters and _bucket/_sum/_count to histograms
                names.update(name + suffix for suffix in SUFFIXES)
    return names


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels") or [])
    return found


def exprs(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    out = [(panel, target["expr"]) for panel in panels(dashboard) for target in panel.get("targets") or []]
    out += [({"description": ""}, a["expr"]) for a in dashboard["annotations"]["list"] if "expr" in a]
    return out


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "promptalias-experiments"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets") or []:
            assert target["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "prompt", "metric"}


def test_every_metric_is_exported_or_marked_proposed(dashboard: dict[str, Any]) -> None:
    known = exported()
    assert "promptalias_client_prompt_loads_total" in known
    used = set()
    for panel, expr in exprs(dashboard):
        for name in METRIC.findall(expr):
            used.add(name)
            if name in PROPOSED:
                assert "proposed" in panel["description"], panel["title"]
            else:
                assert name in known, f"{panel.get('title')}: {name} is not exported by {SOURCES}"
    assert "promptalias_client_prompt_loads_total" in used
    assert "promptalias_alias_writes_total" in used


def test_client_counter_labels_match(dashboard: dict[str, Any]) -> None:
    source = SOURCES[0].read_text()
    assert '["name", "alias", "version", "arm"]' in source
    for _, expr in exprs(dashboard):
        if "promptalias_client_prompt_loads_total" in expr:
            for label in re.findall(r"by \(([^)]*)\)", expr):
                assert set(label.replace(" ", "").split(",")) <= {"name", "alias", "version", "arm"}
