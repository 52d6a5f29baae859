"""Argo CD health checks (gitops/argocd/resource_customizations), executed by a real Lua interpreter.

Argo CD runs health.lua in gopher-lua, a Lua 5.1 VM, and for custom checks opens only the base,
table and package libraries plus a "safe" os (time, date, clock): no string, math, io or debug.
promptalias.testbed.tools.ArgoHealth reproduces that sandbox with lupa's Lua 5.1 runtime, so a
script that would fail in Argo CD (e.g. one calling string.format) fails here too. Cases come from
each kind's health_test.yaml, the same file Argo CD's own test suite reads for its built-in checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptalias.testbed.tools import ARGO_HEALTH_STATUSES as VALID
from promptalias.testbed.tools import ArgoHealth

ROOT = Path(__file__).resolve().parents[2]
CUSTOMIZATIONS = ROOT / "gitops" / "argocd" / "resource_customizations" / "promptalias.io"
ARGOCD_CM = ROOT / "gitops" / "argocd" / "argocd-cm-health.yaml"
KINDS = ("PromptAlias", "PromptRegistry", "ClusterPromptRegistry", "PromptExperiment")


def _plain(value: Any) -> Any:
    """YAML as Argo CD sees it: through JSON (timestamps stay strings)."""
    return json.loads(json.dumps(value, default=str))


def _cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for kind in KINDS:
        spec = yaml.safe_load((CUSTOMIZATIONS / kind / "health_test.yaml").read_text())
        cases += [(kind, case) for case in spec["tests"]]
    return cases


CASES = _cases()


@pytest.mark.parametrize(
    ("kind", "case"), CASES, ids=[f"{kind}-{Path(case['inputPath']).stem}" for kind, case in CASES]
)
def test_health_lua_gives_the_expected_status(kind: str, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((CUSTOMIZATIONS / kind / case["inputPath"]).read_text())
    assert obj["kind"] == kind
    assert ArgoHealth(CUSTOMIZATIONS / kind / "health.lua")(obj) == case["healthStatus"]


def test_layout_is_argocds_resource_customizations_for_every_crd_kind() -> None:
    crd_kinds = set()
    for path in (ROOT / "crds").glob("promptalias.io_*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                crd_kinds.add(doc["spec"]["names"]["kind"])
    assert crd_kinds == set(KINDS)
    for kind in KINDS:
        assert (CUSTOMIZATIONS / kind / "health.lua").is_file()
        assert (CUSTOMIZATIONS / kind / "health_test.yaml").is_file()


@pytest.mark.parametrize("kind", KINDS)
def test_every_testdata_file_is_a_case_and_the_statuses_that_matter_are_covered(kind: str) -> None:
    spec = yaml.safe_load((CUSTOMIZATIONS / kind / "health_test.yaml").read_text())
    used = {Path(case["inputPath"]).name for case in spec["tests"]}
    present = {path.name for path in (CUSTOMIZATIONS / kind / "testdata").glob("*.yaml")}
    assert used == present
    statuses = {case["healthStatus"]["status"] for case in spec["tests"]}
    assert statuses >= {"Healthy", "Progressing", "Degraded"}
    assert statuses <= VALID


@pytest.mark.parametrize("kind", KINDS)
def test_testdata_are_valid_objects_of_the_api(kind: str) -> None:
    """The cases describe objects the operator can really produce: they parse with the API models."""
    from promptalias.api.experiment import PromptExperiment
    from promptalias.api.promptalias import PromptAlias
    from promptalias.api.registry import ClusterPromptRegistry, PromptRegistry

    model = {
        "PromptAlias": PromptAlias,
        "PromptRegistry": PromptRegistry,
        "ClusterPromptRegistry": ClusterPromptRegistry,
        "PromptExperiment": PromptExperiment,
    }[kind]
    for path in sorted((CUSTOMIZATIONS / kind / "testdata").glob("*.yaml")):
        model.from_body(_plain(yaml.safe_load(path.read_text())))


def test_a_stale_status_wins_over_everything_it_says() -> None:
    """generation > observedGeneration: the conditions describe an older spec, so they are not trusted."""
    check = ArgoHealth(CUSTOMIZATIONS / "PromptAlias" / "health.lua")
    obj = yaml.safe_load((CUSTOMIZATIONS / "PromptAlias" / "testdata" / "stalled.yaml").read_text())
    assert check(obj)["status"] == "Degraded"
    obj["metadata"]["generation"] += 1
    assert check(obj) == {
        "status": "Progressing",
        "message": f"Waiting for the operator to observe generation {obj['metadata']['generation']}",
    }


def test_drift_policy_decides_between_degraded_and_progressing() -> None:
    check = ArgoHealth(CUSTOMIZATIONS / "PromptAlias" / "health.lua")
    obj = yaml.safe_load((CUSTOMIZATIONS / "PromptAlias" / "testdata" / "drifted-report.yaml").read_text())
    assert check(obj)["status"] == "Degraded"
    obj["spec"]["driftPolicy"] = "Enforce"
    assert check(obj)["status"] == "Progressing"
    del obj["spec"]["driftPolicy"]  # the schema default is Enforce
    assert check(obj)["status"] == "Progressing"


def test_sandbox_is_as_strict_as_argocd(tmp_path: Path) -> None:
    """A check that uses the string library works in plain Lua but must fail here, as in Argo CD."""
    script = tmp_path / "health.lua"
    script.write_text('return {status = "Healthy", message = string.format("%d", 1)}')
    check = ArgoHealth(script)
    with pytest.raises(check.error, match="string"):
        check({})
    script.write_text('return {status = "Fine"}')
    assert ArgoHealth(script)({}) == {
        "status": "Unknown",
        "message": "Lua returned an invalid health status",
    }


def test_argocd_cm_snippet_carries_the_current_scripts() -> None:
    """argocd-cm-health.yaml is what users merge into argocd-cm; it must match the scripts."""
    config = yaml.safe_load(ARGOCD_CM.read_text())
    assert config["kind"] == "ConfigMap"
    assert config["metadata"]["name"] == "argocd-cm"
    expected = {
        f"resource.customizations.health.promptalias.io_{kind}": (
            CUSTOMIZATIONS / kind / "health.lua"
        ).read_text()
        for kind in KINDS
    }
    assert config["data"] == expected, "regenerate with: python gitops/argocd/generate-argocd-cm.py"
