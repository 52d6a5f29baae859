"""The chart ships exactly the generated CRDs of crds/, unchanged apart from its labels and the
keep annotation (Helm cannot read outside the chart, so hack/tools/sync-chart-crds.sh copies them)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptalias.testbed.tools import Helm, helm

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
CHART_CRDS = ROOT / "charts" / "promptalias" / "files" / "crds"
SYNC = ROOT / "hack" / "tools" / "sync-chart-crds.sh"
PROMPTALIAS_KINDS = {"PromptAlias", "PromptRegistry", "ClusterPromptRegistry", "PromptExperiment"}


def _docs(directory: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[doc["metadata"]["name"]] = doc
    return found


def _without_chart_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    """The CRD minus what the chart adds: its labels and the keep annotation."""
    metadata = dict(crd["metadata"])
    labels = {
        k: v
        for k, v in metadata.pop("labels", {}).items()
        if not k.startswith(("helm.sh/", "app.kubernetes.io/")) or k == "app.kubernetes.io/part-of"
    }
    annotations = {k: v for k, v in metadata.pop("annotations", {}).items() if k != "helm.sh/resource-policy"}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return {**crd, "metadata": metadata}


@pytest.fixture(scope="module")
def chart_helm() -> Helm:
    return helm()


def test_crds_folder_holds_the_promptalias_crds() -> None:
    kinds = {doc["spec"]["names"]["kind"] for doc in _docs(CRDS).values()}
    assert kinds >= PROMPTALIAS_KINDS


def test_chart_copy_is_byte_identical_to_crds_folder() -> None:
    source = {path.name: path.read_bytes() for path in CRDS.glob("*.yaml")}
    copy = {path.name: path.read_bytes() for path in CHART_CRDS.glob("*.yaml")}
    assert sorted(copy) == sorted(source), "run hack/tools/sync-chart-crds.sh"
    stale = [name for name in source if copy[name] != source[name]]
    assert not stale, f"stale chart copies {stale}: run hack/tools/sync-chart-crds.sh"


def test_sync_script_check_mode_agrees() -> None:
    result = subprocess.run([str(SYNC), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_rendered_crds_are_the_crds_folder_plus_labels_and_keep(chart_helm: Helm) -> None:
    """Proves the template's YAML round trip (fromYaml/toYaml) loses nothing: numbers, patterns, CEL."""
    rendered = {
        obj["metadata"]["name"]: obj
        for obj in chart_helm.template(ROOT / "charts" / "promptalias")
        if obj["kind"] == "CustomResourceDefinition"
    }
    source = _docs(CRDS)
    assert sorted(rendered) == sorted(source)
    for name, crd in rendered.items():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert _without_chart_metadata(crd) == source[name], name
