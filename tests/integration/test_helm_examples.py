"""examples/argocd and examples/flux: what can be checked by the real apiserver is; the rest by shape.

The PromptRegistry/PromptAlias manifests (built with kustomize, as Argo CD and Flux build them) and
the chart rendered with the HelmRelease's values pass server-side dry-run on the testbed. The Argo CD
Application and the Flux GitRepository/HelmRepository/Kustomization/HelmRelease objects are NOT
validated by an apiserver — their CRDs are not installed on the testbed — so their structure, the
paths and references they hold, and the chart values they carry (rendered with the strict values
schema) are checked here instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptalias.testbed import Testbed
from promptalias.testbed.tools import Helm, helm

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "examples" / "argocd"
FLUX = ROOT / "examples" / "flux"
CHART = ROOT / "charts" / "promptalias"
STORY_NAMESPACE = "billing"


def load(*paths: Path) -> list[dict[str, Any]]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomize(testbed: Testbed, directory: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(testbed.kubectl("kustomize", str(directory)).stdout) if doc]


def relocate(value: Any, namespace: str) -> Any:
    """The story's namespace replaced by the test's (every string equal to it)."""
    if isinstance(value, dict):
        return {k: relocate(v, namespace) for k, v in value.items()}
    if isinstance(value, list):
        return [relocate(v, namespace) for v in value]
    return namespace if value == STORY_NAMESPACE else value


def dry_run(testbed: Testbed, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = testbed.kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        "--force-conflicts",  # a dry run validates; who owns a field (e.g. an installed CRD's labels) is moot
        "--field-manager=examples-dry-run",
        "-o",
        "json",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    accepted = json.loads(result.stdout)
    items: list[dict[str, Any]] = accepted["items"] if accepted.get("kind") == "List" else [accepted]
    return items


@pytest.fixture(scope="module")
def chart_helm(testbed: Testbed) -> Helm:
    return helm(testbed.kubeconfig)


@pytest.fixture(scope="module", autouse=True)
def crds(testbed: Testbed) -> None:
    manager = "--field-manager=promptalias-examples-tests"
    testbed.kubectl("apply", "--server-side", "--force-conflicts", manager, "-f", str(ROOT / "crds"))
    names = [f"crd/{plural}.promptalias.io" for plural in ("promptaliases", "promptregistries")]
    testbed.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


@pytest.mark.parametrize(
    "directory", [FLUX / "invoice-parser", ARGOCD / "invoice-parser"], ids=["flux", "argocd"]
)
def test_invoice_parser_manifests_pass_server_side_dry_run(
    testbed: Testbed, namespace: str, directory: Path
) -> None:
    objects = kustomize(testbed, directory)
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == ["Namespace", "PromptAlias", "PromptAlias", "PromptRegistry"]
    namespaced = [relocate(obj, namespace) for obj in objects if obj["kind"] != "Namespace"]
    accepted = dry_run(testbed, namespaced)
    by_name = {obj["metadata"]["name"]: obj for obj in accepted}
    production = by_name["invoice-parser-production"]
    assert production["spec"]["version"] == 3
    # The apiserver fills in the schema defaults (why Argo CD sees no diff for fields Git omits).
    staging = by_name["invoice-parser-staging"]
    assert "version" not in staging["spec"]
    assert staging["spec"]["driftPolicy"] == "Enforce"
    assert staging["spec"]["deletionPolicy"] == "Retain"
    if directory.parent == ARGOCD:
        waves = {o["kind"]: o["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] for o in accepted}
        assert waves == {"PromptRegistry": "0", "PromptAlias": "1"}
    (namespace_obj,) = [obj for obj in objects if obj["kind"] == "Namespace"]
    assert namespace_obj["metadata"]["name"] == STORY_NAMESPACE
    assert dry_run(testbed, [namespace_obj])[0]["metadata"]["name"] == STORY_NAMESPACE


def test_flux_objects_reference_each_other_and_real_paths() -> None:
    objects = load(*FLUX.glob("*.yaml"), FLUX / "operator" / "helmrelease.yaml")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    (git,) = by_kind["GitRepository"]
    (helm_repository,) = by_kind["HelmRepository"]
    (release,) = by_kind["HelmRelease"]
    kustomizations = {k["metadata"]["name"]: k for k in by_kind["Kustomization"]}
    assert git["apiVersion"] == helm_repository["apiVersion"] == "source.toolkit.fluxcd.io/v1"
    assert release["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    assert re.fullmatch(r"https://\S+", git["spec"]["url"])
    assert re.fullmatch(r"https://\S+", helm_repository["spec"]["url"])
    ignored = git["spec"]["ignore"].split()
    for kustomization in kustomizations.values():
        assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
        assert kustomization["spec"]["sourceRef"] == {
            "kind": "GitRepository",
            "name": git["metadata"]["name"],
        }
        assert kustomization["metadata"]["namespace"] == git["metadata"]["namespace"]
        path = kustomization["spec"]["path"]
        assert (ROOT / path / "kustomization.yaml").is_file(), path
        assert any(f"/{path.removeprefix('./')}/".startswith(rule[1:]) for rule in ignored if rule[0] == "!")
        assert kustomization["spec"]["wait"] is True  # health by kstatus
        for dependency in kustomization["spec"].get("dependsOn", []):
            assert dependency["name"] in kustomizations
    assert kustomizations["invoice-parser-prompts"]["spec"]["dependsOn"] == [{"name": "promptalias-operator"}]
    chart = release["spec"]["chart"]["spec"]
    assert chart["sourceRef"] == {"kind": "GitRepository", "name": "promptalias", "namespace": "flux-system"}
    assert (ROOT / chart["chart"] / "Chart.yaml").is_file()
    assert "!/charts/" in ignored
    assert release["spec"]["install"]["crds"] == release["spec"]["upgrade"]["crds"] == "Skip"
    operator_dir = load(FLUX / "operator" / "kustomization.yaml")[0]
    assert operator_dir["resources"] == ["helmrelease.yaml"]


def test_argocd_applications_point_at_real_paths() -> None:
    applications = {app["metadata"]["name"]: app for app in load(*ARGOCD.glob("application-*.yaml"))}
    assert set(applications) == {"promptalias", "invoice-parser-prompts"}
    for app in applications.values():
        assert app["apiVersion"] == "argoproj.io/v1alpha1"
        assert app["kind"] == "Application"
        source = app["spec"]["source"]
        assert re.fullmatch(r"https://\S+", source["repoURL"])
        assert (ROOT / source["path"]).is_dir()
        assert app["spec"]["destination"]["server"] == "https://kubernetes.default.svc"
        assert app["spec"]["project"]
        assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    operator = applications["promptalias"]
    assert (ROOT / operator["spec"]["source"]["path"] / "Chart.yaml").is_file()
    assert "ServerSideApply=true" in operator["spec"]["syncPolicy"]["syncOptions"]
    # helm template cannot look up the certificate: only cert-manager keeps renders identical.
    assert operator["spec"]["source"]["helm"]["valuesObject"]["webhook"]["certManager"]["enabled"] is True
    prompts = applications["invoice-parser-prompts"]
    assert (ROOT / prompts["spec"]["source"]["path"] / "kustomization.yaml").is_file()
    assert prompts["spec"]["destination"]["namespace"] == STORY_NAMESPACE


def _values(kind: str) -> dict[str, Any]:
    if kind == "HelmRelease":
        (release,) = load(FLUX / "operator" / "helmrelease.yaml")
        values: dict[str, Any] = release["spec"]["values"]
        return values
    (app,) = load(ARGOCD / "application-operator.yaml")
    argo_values: dict[str, Any] = app["spec"]["source"]["helm"]["valuesObject"]
    return argo_values


@pytest.mark.parametrize("kind", ["HelmRelease", "Application"])
def test_chart_values_in_the_examples_render_and_pass_dry_run(
    testbed: Testbed, chart_helm: Helm, namespace: str, kind: str
) -> None:
    values = relocate(_values(kind), namespace)
    objects = chart_helm.template(CHART, release="promptalias", namespace=namespace, set_json=values)
    assert any(obj["kind"] == "MutatingWebhookConfiguration" for obj in objects)
    roles = [o for o in objects if o["kind"] == "Role"]
    assert {role["metadata"]["namespace"] for role in roles} == {namespace}
    # Argo CD's chart uses cert-manager, whose CRDs the testbed lacks: those two are checked by shape.
    served = [obj for obj in objects if obj["kind"] not in {"Certificate", "Issuer"}]
    assert len(objects) - len(served) == (2 if kind == "Application" else 0)
    dry_run(testbed, served)


def test_renders_of_the_argocd_values_are_stable() -> None:
    """No perpetual OutOfSync: two `helm template` runs (what Argo CD does) give the same output."""
    values = _values("Application")
    first = helm().template(CHART, release="promptalias", namespace="promptalias-system", set_json=values)
    second = helm().template(CHART, release="promptalias", namespace="promptalias-system", set_json=values)
    assert first == second
