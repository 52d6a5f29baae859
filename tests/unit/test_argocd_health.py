"""Argo CD health checks (gitops/argocd/resource_customizations), executed by a real Lua interpreter.

Argo CD runs health.lua in gopher-lua, a Lua 5.1 VM, and for custom checks opens only the base,
table and package libraries plus a "safe" os (time, date, clock): no string, math, io or debug. The
sandbox below reproduces that with lupa's Lua 5.1 runtime, so a script that would fail in Argo CD
(e.g. one calling string.format) fails here too. Cases come from each kind's health_test.yaml, the
same file Argo CD's own test suite reads for its built-in checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lupa.lua51 as lupa  # type: ignore[import-untyped]  # no stubs; the Lua side is untyped anyway
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CUSTOMIZATIONS = ROOT / "gitops" / "argocd" / "resource_customizations" / "promptalias.io"
ARGOCD_CM = ROOT / "gitops" / "argocd" / "argocd-cm-health.yaml"
KINDS = ("PromptAlias", "PromptRegistry", "ClusterPromptRegistry", "PromptExperiment")
VALID = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

_SANDBOX = """
local script, name = ...
local safe_os = {time = os.time, date = os.date, clock = os.clock}
local env = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  print = print, rawequal = rawequal, rawget = rawget, rawset = rawset, select = select,
  setmetatable = setmetatable, getmetatable = getmetatable, tonumber = tonumber,
  tostring = tostring, type = type, unpack = unpack, xpcall = xpcall, _VERSION = _VERSION,
  table = table, os = safe_os,
}
env._G = env
-- Without the string library gopher-lua strings have no methods either ("x"):upper() fails.
debug.setmetatable("", nil)
local chunk, err = loadstring(script, "=" .. name)
if chunk == nil then error(err) end
setfenv(chunk, env)
return function(obj)
  env.obj = obj
  return chunk()
end
"""


def _plain(value: Any) -> Any:
    """YAML as Argo CD sees it: through JSON (timestamps stay strings, numbers are doubles)."""
    return json.loads(json.dumps(value, default=str))


class ArgoLua:
    """Runs one health.lua the way Argo CD's lua VM does."""

    def __init__(self, script: Path) -> None:
        self.lua = lupa.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
        self.run = self.lua.execute(_SANDBOX, script.read_text(), script.as_posix())

    def _table(self, value: Any) -> Any:
        if isinstance(value, dict):
            return self.lua.table_from({k: self._table(v) for k, v in value.items()})
        if isinstance(value, list):
            return self.lua.table_from([self._table(v) for v in value])
        return value

    def health(self, obj: dict[str, Any]) -> dict[str, str]:
        result = self.run(self._table(_plain(obj)))
        assert lupa.lua_type(result) == "table", f"health.lua returned {lupa.lua_type(result)}, not a table"
        status = {str(k): str(v) for k, v in result.items()}
        if status.get("status") not in VALID:  # what Argo CD does with an invalid status
            return {"status": "Unknown", "message": "Lua returned an invalid health status"}
        return status


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
    assert ArgoLua(CUSTOMIZATIONS / kind / "health.lua").health(obj) == case["healthStatus"]


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
    check = ArgoLua(CUSTOMIZATIONS / "PromptAlias" / "health.lua")
    obj = yaml.safe_load((CUSTOMIZATIONS / "PromptAlias" / "testdata" / "stalled.yaml").read_text())
    assert check.health(obj)["status"] == "Degraded"
    obj["metadata"]["generation"] += 1
    assert check.health(obj) == {
        "status": "Progressing",
        "message": f"Waiting for the operator to observe generation {obj['metadata']['generation']}",
    }


def test_drift_policy_decides_between_degraded_and_progressing() -> None:
    check = ArgoLua(CUSTOMIZATIONS / "PromptAlias" / "health.lua")
    obj = yaml.safe_load((CUSTOMIZATIONS / "PromptAlias" / "testdata" / "drifted-report.yaml").read_text())
    assert check.health(obj)["status"] == "Degraded"
    obj["spec"]["driftPolicy"] = "Enforce"
    assert check.health(obj)["status"] == "Progressing"
    del obj["spec"]["driftPolicy"]  # the schema default is Enforce
    assert check.health(obj)["status"] == "Progressing"


def test_sandbox_is_as_strict_as_argocd(tmp_path: Path) -> None:
    """A check that uses the string library works in plain Lua but must fail here, as in Argo CD."""
    script = tmp_path / "health.lua"
    script.write_text('return {status = "Healthy", message = string.format("%d", 1)}')
    with pytest.raises(lupa.LuaError, match="string"):
        ArgoLua(script).health({})
    script.write_text('return {status = "Fine"}')
    assert ArgoLua(script).health({}) == {
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
