"""The CRDs in crds/, installed on the real kube-apiserver, refuse bad objects with readable messages.

Invalid objects come from fixtures/invalid/cases.yaml (shared with tests/unit/test_api_cases.py, which
checks that the pydantic models refuse the same objects). Creates are server-side dry runs: the
apiserver defaults and validates exactly as for a real create, and nothing is left behind (which
matters for the cluster-scoped ClusterPromptRegistry).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from promptalias.api import GROUP, PLURALS, RESOURCES, VERSION, PromptAlias, Resource
from promptalias.testbed import Testbed

pytestmark = [pytest.mark.integration, pytest.mark.without_operator]

ROOT = Path(__file__).resolve().parents[2]
CRDS_DIR = ROOT / "crds"
FIXTURES = yaml.safe_load((Path(__file__).parent / "fixtures" / "invalid" / "cases.yaml").read_text())
BASES: dict[str, dict[str, Any]] = FIXTURES["bases"]
KINDS: dict[str, type[Resource]] = {resource.KIND: resource for resource in RESOURCES}
CLUSTER_SCOPED = {resource.KIND for resource in RESOURCES if resource.SCOPE == "Cluster"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def build(kind: str, name: str, patch: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = merge_patch(BASES[kind], patch or {})
    body.update({"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}})
    return body


def object_name(case: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", case.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:5]


@pytest.fixture(scope="module")
def crds(testbed: Testbed) -> None:
    """Install (or update) the CRDs from crds/ — idempotent, other modules may install them too."""
    testbed.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=promptalias-crd-tests",
        "-f",
        str(CRDS_DIR),
    )
    names = [f"crd/{resource.PLURAL}.{GROUP}" for resource in RESOURCES]
    testbed.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


@pytest.fixture
def custom(k8s_api: Any, crds: None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s_api)


class Objects:
    """Create/patch/read custom objects in one namespace (or cluster-wide for cluster kinds)."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.cluster_created: list[tuple[str, str]] = []

    def create(self, body: dict[str, Any], *, dry_run: bool = True) -> dict[str, Any]:
        kind = body["kind"]
        plural = PLURALS[kind]
        extra = {"dry_run": "All"} if dry_run else {}
        if kind in CLUSTER_SCOPED:
            created: dict[str, Any] = self.api.create_cluster_custom_object(
                GROUP, VERSION, plural, body, **extra
            )
            if not dry_run:
                self.cluster_created.append((plural, body["metadata"]["name"]))
            return created
        return dict(
            self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body, **extra)
        )

    def patch(self, kind: str, name: str, patch: dict[str, Any], *, status: bool = False) -> dict[str, Any]:
        method = (
            self.api.patch_namespaced_custom_object_status
            if status
            else self.api.patch_namespaced_custom_object
        )
        result: dict[str, Any] = method(
            GROUP,
            VERSION,
            self.namespace,
            PLURALS[kind],
            name,
            patch,
            _content_type="application/merge-patch+json",
        )
        return result

    def get(self, kind: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[kind], name
        )
        return result

    def cleanup(self) -> None:
        for plural, name in self.cluster_created:
            self.api.delete_cluster_custom_object(GROUP, VERSION, plural, name)


@pytest.fixture
def objects(custom: client.CustomObjectsApi, namespace: str) -> Iterator[Objects]:
    store = Objects(custom, namespace)
    try:
        yield store
    finally:
        store.cleanup()


def refusal(call: Any) -> str:
    """Run `call`, expect a 422 Invalid from the apiserver, return its message."""
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 422, f"expected 422 Invalid, got {caught.value.status}: {caught.value.body}"
    message: str = json.loads(caught.value.body)["message"]
    return message


# --- the apiserver refuses invalid objects, readably ------------------------------------------------


@pytest.mark.parametrize("case", FIXTURES["cases"], ids=[case["name"] for case in FIXTURES["cases"]])
def test_invalid_object_is_refused(objects: Objects, case: dict[str, Any]) -> None:
    body = build(case["kind"], object_name(case["name"]), case["patch"])
    message = refusal(lambda: objects.create(body))
    assert case["expect"] in message, f"{case['name']}: expected {case['expect']!r} in:\n{message}"


@pytest.mark.parametrize("case", FIXTURES["updates"], ids=[case["name"] for case in FIXTURES["updates"]])
def test_invalid_update_is_refused(objects: Objects, case: dict[str, Any]) -> None:
    name = object_name(case["name"])
    objects.create(build(case["kind"], name), dry_run=False)
    message = refusal(lambda: objects.patch(case["kind"], name, case["patch"]))
    assert case["expect"] in message, f"{case['name']}: expected {case['expect']!r} in:\n{message}"


def test_fixture_table_is_large_enough() -> None:
    assert len(FIXTURES["cases"]) >= 30
    assert {case["kind"] for case in FIXTURES["cases"]} == set(KINDS)


# --- valid objects are accepted, and defaulted exactly as the models default them --------------------

VALID: list[tuple[str, str, dict[str, Any]]] = [
    ("pa-minimal", "PromptAlias", {}),
    ("pa-follow-mlflow", "PromptAlias", {"spec": {"version": None}}),
    (
        "pa-full",
        "PromptAlias",
        {
            "spec": {
                "registryRef": {"kind": "ClusterPromptRegistry", "name": "shared-mlflow"},
                "prompt": "invoice_parser.v2-beta",
                "alias": "production-eu_1",
                "version": 12,
                "deletionPolicy": "Delete",
                "driftPolicy": "Report",
                "policy": {"requireVersionTags": {"approved": "true", "team": "billing"}},
                "projection": {"enabled": False},
                "historyLimit": 100,
            }
        },
    ),
    ("pa-alias-containing-latest", "PromptAlias", {"spec": {"alias": "latest-stable"}}),
    ("pa-alias-v-word", "PromptAlias", {"spec": {"alias": "v1beta"}}),
    ("preg-minimal", "PromptRegistry", {}),
    (
        "preg-full",
        "PromptRegistry",
        {
            "spec": {
                "trackingUri": "https://mlflow.example.com:8443/mlflow?x=1",
                "workspace": "team-a",
                "auth": {"secretRef": {"name": "mlflow-creds"}},
                "tls": {"caSecretRef": {"name": "mlflow-ca"}},
                "timeout": "1m30s",
                "refreshInterval": "1h0m0s",
                "webhook": {"secretRef": {"name": "mlflow-webhook"}},
            }
        },
    ),
    ("preg-no-periodic-check", "PromptRegistry", {"spec": {"refreshInterval": "0s", "timeout": "250ms"}}),
    ("preg-webhook-disabled", "PromptRegistry", {"spec": {"webhook": {"enabled": False}}}),
    ("cpreg-minimal", "ClusterPromptRegistry", {}),
    (
        "cpreg-full",
        "ClusterPromptRegistry",
        {
            "spec": {
                "auth": {
                    "secretRef": {"name": "mlflow-creds", "namespace": "mlflow", "tokenKey": "api-token"}
                },
                "tls": {"caSecretRef": {"name": "mlflow-ca", "namespace": "mlflow", "key": "bundle.pem"}},
                "webhook": {"secretRef": {"name": "mlflow-webhook", "namespace": "mlflow", "key": "hmac"}},
                "conditions": [
                    {"namespaces": ["billing", "search"]},
                    {
                        "namespaceSelector": {
                            "matchLabels": {"promptalias.io/registry": "shared"},
                            "matchExpressions": [
                                {"key": "team", "operator": "In", "values": ["ml", "search"]},
                                {"key": "sandbox", "operator": "DoesNotExist"},
                            ],
                        }
                    },
                ],
            }
        },
    ),
    ("pexp-minimal", "PromptExperiment", {}),
    (
        "pexp-steps",
        "PromptExperiment",
        {
            "spec": {
                "weight": 50,
                "routingKey": "tenant",
                "steps": [{"weight": 5, "pause": "10m"}, {"weight": 20, "pause": "1h"}, {"weight": 50}],
                "suspend": True,
            }
        },
    ),
    (
        "pexp-analysis",
        "PromptExperiment",
        {
            "spec": {
                "analysis": {
                    "interval": "30s",
                    "minSamples": 500,
                    "maxDuration": "24h",
                    "onInconclusive": "Abort",
                    "alpha": 0.01,
                    "power": 0.9,
                    "metrics": [
                        {
                            "name": "thumbs-up",
                            "role": "Success",
                            "direction": "Higher",
                            "minimumEffect": 0.05,
                            "mlflowFeedback": {
                                "experiment": "invoice-parser",
                                "name": "thumbs",
                                "aggregation": "Rate",
                            },
                        },
                        {
                            "name": "error-rate",
                            "role": "Guard",
                            "direction": "Lower",
                            "threshold": 0.02,
                            "thresholdType": "Absolute",
                            "prometheus": {
                                "address": "http://127.0.0.1:9090",
                                "count": 'sum(increase(requests_total{version="{{version}}"}[{{window}}]))',
                                "value": (
                                    'sum(increase(requests_total{version="{{version}}",outcome="error"}'
                                    "[{{window}}]))"
                                ),
                                "timeout": "5s",
                            },
                        },
                        {
                            "name": "p95",
                            "role": "Guard",
                            "direction": "Lower",
                            "threshold": 0.25,
                            "prometheus": {"statistic": "Value", "count": "sum(a)", "value": "max(b)"},
                        },
                    ],
                }
            }
        },
    ),
]


@pytest.mark.parametrize(("case", "kind", "patch"), VALID, ids=[case for case, _, _ in VALID])
def test_valid_object_is_accepted_and_defaulted_like_the_models(
    objects: Objects, case: str, kind: str, patch: dict[str, Any]
) -> None:
    body = build(kind, object_name(case), patch)
    created = objects.create(body)
    expected = KINDS[kind].from_body(body).spec.to_dict()
    assert created["spec"] == expected


def test_defaults_are_applied_by_the_apiserver(objects: Objects) -> None:
    alias = objects.create(build("PromptAlias", object_name("defaults")))["spec"]
    assert alias["registryRef"]["kind"] == "PromptRegistry"
    assert alias["deletionPolicy"] == "Retain"
    assert alias["driftPolicy"] == "Enforce"
    assert alias["projection"] == {"enabled": True}
    assert alias["historyLimit"] == 20
    assert "policy" not in alias
    registry = objects.create(
        build(
            "PromptRegistry",
            object_name("defaults"),
            {
                "spec": {
                    "trackingUri": "https://mlflow.example.com",
                    "auth": {"secretRef": {"name": "creds"}},
                    "tls": {"caSecretRef": {"name": "ca"}},
                    "webhook": {"secretRef": {"name": "hook"}},
                }
            },
        )
    )["spec"]
    assert registry["timeout"] == "5s"
    assert registry["refreshInterval"] == "60s"
    assert registry["auth"]["secretRef"] == {
        "name": "creds",
        "tokenKey": "token",
        "usernameKey": "username",
        "passwordKey": "password",
    }
    assert registry["tls"] == {"caSecretRef": {"name": "ca", "key": "ca.crt"}, "insecureSkipVerify": False}
    assert registry["webhook"] == {"enabled": True, "secretRef": {"name": "hook", "key": "secret"}}
    experiment = objects.create(build("PromptExperiment", object_name("defaults")))["spec"]
    assert experiment["routingKey"] == "user"
    assert experiment["suspend"] is False


def test_null_optional_field_means_omitted(objects: Objects) -> None:
    body = build("PromptAlias", object_name("null-version"))
    body["spec"]["version"] = None
    created = objects.create(body)
    assert "version" not in created["spec"]


# --- updates and status --------------------------------------------------------------------------


def test_version_and_policies_can_change(objects: Objects) -> None:
    name = object_name("mutable")
    objects.create(build("PromptAlias", name), dry_run=False)
    updated = objects.patch(
        "PromptAlias", name, {"spec": {"version": 4, "driftPolicy": "Report", "deletionPolicy": "Delete"}}
    )
    assert updated["spec"]["version"] == 4
    assert updated["metadata"]["generation"] == 2


STATUS: dict[str, Any] = {
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Synced",
            "message": "alias production points at version 3",
            "lastTransitionTime": "2025-01-02T03:04:05Z",
            "observedGeneration": 1,
        },
        {
            "type": "Drifted",
            "status": "False",
            "reason": "Synced",
            "message": "",
            "lastTransitionTime": "2025-01-02T03:04:05Z",
        },
    ],
    "resolvedVersion": 3,
    "previousVersion": 2,
    "templateDigest": "sha256:" + "ab" * 32,
    "uri": "prompts:/invoice-parser@production",
    "configMapRef": {"name": "promptalias-invoice-parser-production"},
    "lastSyncTime": "2025-01-02T03:04:06Z",
    "history": [
        {
            "version": 2,
            "time": "2025-01-01T00:00:00Z",
            "reason": "Adopted",
            "actor": "promptalias",
        },
        {
            "version": 3,
            "previousVersion": 2,
            "time": "2025-01-02T03:04:05Z",
            "reason": "Applied",
            "actor": "system:serviceaccount:ci:deployer",
            "message": "spec.version 2 -> 3",
        },
    ],
}


def test_analysis_status_is_stored_whole_and_parses(objects: Objects) -> None:
    """What reconcile/analysis.decide writes (numbers, verdicts, reasons) fits the CRD unpruned."""
    from datetime import UTC, datetime, timedelta

    from promptalias.api.experiment import PromptExperiment
    from promptalias.reconcile.analysis import ArmData, Context, MetricData, decide
    from promptalias.reconcile.stats import Summary

    name = object_name("analysis-status")
    spec = VALID[-1][2]["spec"]
    objects.create(build("PromptExperiment", name, {"spec": spec}), dry_run=False)
    analysis = PromptExperiment.from_body(build("PromptExperiment", name, {"spec": spec})).spec.analysis
    assert analysis is not None
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    rates = MetricData(
        ArmData(n=3000, summary=Summary.rate(3000, 1500), exposures=4000),
        ArmData(n=3000, summary=Summary.rate(3000, 1800), exposures=4000),
    )
    values = MetricData(ArmData(n=900, value=0.8), ArmData(n=900, value=0.82))
    result = decide(
        analysis,
        {"thumbs-up": rates, "error-rate": rates, "p95": values},
        Context(now=now, started=now - timedelta(hours=1), window_start=now, weight=50, candidate_version=4),
    )
    status = {"analysis": result.status.to_dict()}
    objects.patch("PromptExperiment", name, {"status": status}, status=True)
    stored = objects.get("PromptExperiment", name)
    assert stored["status"]["analysis"] == status["analysis"]
    parsed = PromptExperiment.from_body(stored).status.analysis
    assert parsed is not None
    assert parsed.decision == result.decision
    assert [m.verdict for m in parsed.metrics] == [m.verdict for m in result.status.metrics]


def test_operator_status_is_stored_whole_and_parses(objects: Objects) -> None:
    name = object_name("status")
    objects.create(build("PromptAlias", name), dry_run=False)
    objects.patch("PromptAlias", name, {"status": STATUS}, status=True)
    stored = objects.get("PromptAlias", name)
    assert stored["status"] == STATUS  # nothing pruned
    parsed = PromptAlias.from_body(stored)
    assert parsed.status.resolved_version == 3
    assert parsed.status.to_dict() == STATUS


def test_status_subresource_ignores_spec_and_main_resource_ignores_status(objects: Objects) -> None:
    name = object_name("subresource")
    objects.create(build("PromptAlias", name), dry_run=False)
    objects.patch(
        "PromptAlias", name, {"spec": {"version": 9}, "status": {"resolvedVersion": 3}}, status=True
    )
    stored = objects.get("PromptAlias", name)
    assert stored["spec"]["version"] == 3
    assert stored["status"] == {"resolvedVersion": 3}
    objects.patch("PromptAlias", name, {"status": {"resolvedVersion": 7}})
    assert objects.get("PromptAlias", name)["status"] == {"resolvedVersion": 3}


@pytest.mark.parametrize(
    ("patch", "expect"),
    [
        (
            {"history": [{"version": 3, "time": "2025-01-01T00:00:00Z", "reason": "Moved"}]},
            'Unsupported value: "Moved"',
        ),
        (
            {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "Maybe",
                        "reason": "Synced",
                        "message": "",
                        "lastTransitionTime": "2025-01-01T00:00:00Z",
                    }
                ]
            },
            'Unsupported value: "Maybe"',
        ),
        ({"conditions": [{"type": "Ready", "status": "True"}]}, "Required value"),
        ({"templateDigest": "md5:abc"}, "templateDigest in body should match"),
    ],
    ids=["history-reason", "condition-status", "condition-incomplete", "digest-format"],
)
def test_invalid_status_is_refused(objects: Objects, patch: dict[str, Any], expect: str) -> None:
    name = object_name("bad-status")
    objects.create(build("PromptAlias", name), dry_run=False)
    message = refusal(lambda: objects.patch("PromptAlias", name, {"status": patch}, status=True))
    assert expect in message, message


# --- kubectl: short names, printer columns, field selectors --------------------------------------


def test_kubectl_shows_the_printer_columns(testbed: Testbed, objects: Objects) -> None:
    name = object_name("columns")
    objects.create(build("PromptAlias", name), dry_run=False)
    objects.patch("PromptAlias", name, {"status": STATUS}, status=True)
    out = testbed.kubectl("get", "pa", name, "-n", objects.namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "PROMPT", "ALIAS", "VERSION", "RESOLVED", "READY", "REASON", "AGE"]
    assert out[1].split()[:7] == [name, "invoice-parser", "production", "3", "3", "True", "Synced"]
    wide = testbed.kubectl("get", "promptalias", name, "-n", objects.namespace, "-o", "wide").stdout
    assert "MESSAGE" in wide.splitlines()[0]
    assert "alias production points at version 3" in wide


def test_field_selectors_on_prompt_and_alias(testbed: Testbed, objects: Objects) -> None:
    wanted, other = object_name("selected"), object_name("other")
    objects.create(build("PromptAlias", wanted), dry_run=False)
    objects.create(build("PromptAlias", other, {"spec": {"prompt": "other-prompt"}}), dry_run=False)
    out = testbed.kubectl(
        "get",
        "pa",
        "-n",
        objects.namespace,
        "--field-selector",
        "spec.prompt=invoice-parser,spec.alias=production",
        "-o",
        "name",
    ).stdout.split()
    assert out == [f"promptalias.promptalias.io/{wanted}"]


def test_kubectl_explain_shows_the_docstrings(testbed: Testbed, crds: None) -> None:
    def explain(path: str) -> str:
        return " ".join(testbed.kubectl("explain", path).stdout.split())  # kubectl wraps the text

    assert "Omit it to follow MLflow" in explain("pa.spec.version")
    assert "Which namespaces may use this registry" in explain("clusterpromptregistries.spec.conditions")


def test_registry_columns(testbed: Testbed, objects: Objects) -> None:
    name = object_name("registry-columns")
    objects.create(build("PromptRegistry", name), dry_run=False)
    out = testbed.kubectl("get", "preg", name, "-n", objects.namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "URI", "READY", "REASON", "SERVER", "AGE"]
    assert out[1].split()[:2] == [name, "http://mlflow.mlflow.svc:5000"]


def test_category_lists_every_kind(testbed: Testbed, objects: Objects) -> None:
    objects.create(build("PromptAlias", object_name("category")), dry_run=False)
    objects.create(build("PromptRegistry", object_name("category")), dry_run=False)
    out = testbed.kubectl("get", "prompts", "-n", objects.namespace, "-o", "name").stdout
    assert "promptalias.promptalias.io/" in out
    assert "promptregistry.promptalias.io/" in out
