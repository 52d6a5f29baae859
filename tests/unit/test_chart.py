"""The Helm chart, rendered by the real helm (built from helm.sh/helm/v3 and cached): lint, values
schema, and the shape of what it renders. No cluster needed; tests/integration/test_helm*.py puts the
same renders through the real apiserver."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptalias.testbed.errors import TestbedError
from promptalias.testbed.tools import Helm, helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "promptalias"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
NAMESPACE = "promptalias-system"
STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)
# Values that hold Kubernetes objects verbatim: their inner keys belong to the Kubernetes API, not
# to the chart, so the schema leaves them open and values.yaml documents them as a whole.
PASSTHROUGH = {
    "global",
    "commonLabels",
    "podSecurityContext",
    "securityContext",
    "resources",
    "affinity",
    "nodeSelector",
    "podAnnotations",
    "podLabels",
    "serviceAccount.annotations",
    "metrics.service.annotations",
    "metrics.serviceMonitor.labels",
    "webhook.namespaceSelector",
    "webhook.objectSelector",
    "webhook.certManager.issuerRef",
    "sidecarRbac.apps",
}


@pytest.fixture(scope="module")
def chart_helm() -> Helm:
    return helm()


def render(chart_helm: Helm, *files: Path, **set_json: Any) -> list[dict[str, Any]]:
    return chart_helm.template(CHART, namespace=NAMESPACE, values=files, set_json=set_json)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return containers[0]


def rules_for(role: dict[str, Any], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in role.get("rules", []):
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict_passes_with_every_ci_values_file(chart_helm: Helm, values: Path) -> None:
    result = chart_helm.run("lint", "--strict", str(CHART), "--values", str(values), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_ci_values_files_cover_the_modes_the_tests_rely_on() -> None:
    assert {p.name for p in CI_VALUES} >= {
        "default-values.yaml",
        "namespaced-values.yaml",
        "webhook-values.yaml",
        "certmanager-values.yaml",
        "minimal-values.yaml",
    }


def test_default_render_has_the_operator_objects_with_standard_labels(chart_helm: Helm) -> None:
    objects = render(chart_helm)
    kinds = sorted({obj["kind"] for obj in objects})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert len(obj["metadata"]["name"]) <= 63 or obj["kind"] == "CustomResourceDefinition"
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}:
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_deployment_runs_the_operator_hardened_with_peering_and_probes(chart_helm: Helm) -> None:
    objects = render(chart_helm)
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    operator = container(objects)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())

    assert deployment["spec"]["replicas"] == 2
    assert operator["image"] == f"ghcr.io/promptalias/promptalias:{chart['appVersion']}"
    assert operator["args"][0] == "operator"
    assert "--all-namespaces" in operator["args"]
    assert "--peering=promptalias" in operator["args"]
    assert "--health-listen=0.0.0.0:8080" in operator["args"]
    assert "--log-format=json" in operator["args"]
    env = {item["name"]: item for item in operator["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # kopf's peer identity
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in operator["ports"]

    assert pod["serviceAccountName"] == "promptalias"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = operator["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert operator["resources"]["requests"]
    assert operator["resources"]["limits"]["memory"]
    # A read-only root needs a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in operator["volumeMounts"]

    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    service = one(objects, "Service")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["targetPort"] == "http-metrics"
    assert "--metrics-listen=0.0.0.0:9090" in operator["args"]


def test_the_deployment_command_line_is_one_the_promptalias_cli_accepts(chart_helm: Helm) -> None:
    """The chart and the `promptalias operator` parser must agree on every flag the chart passes."""
    from promptalias.cli.main import build_parser

    for files in ([], [CHART / "ci" / "namespaced-values.yaml"], [CHART / "ci" / "webhook-values.yaml"]):
        args = container(render(chart_helm, *files))["args"]
        try:
            parsed = build_parser().parse_args(args)
        except SystemExit as exc:  # argparse exits on unknown flags
            pytest.fail(f"`promptalias {' '.join(args)}` is rejected by the CLI (exit {exc.code})")
        assert parsed.command == "operator"


def test_single_replica_has_no_pdb_because_it_would_block_node_drains(chart_helm: Helm) -> None:
    assert not by_kind(render(chart_helm, replicaCount=1), "PodDisruptionBudget")
    assert not by_kind(render(chart_helm, podDisruptionBudget={"enabled": False}), "PodDisruptionBudget")


def test_cluster_wide_rbac_grants_what_the_operator_needs_and_no_more(chart_helm: Helm) -> None:
    role = one(render(chart_helm), "ClusterRole")
    reader = {"get", "list", "watch"}
    for plural in ("promptaliases", "promptregistries", "clusterpromptregistries", "promptexperiments"):
        assert rules_for(role, "promptalias.io", plural) == reader | {"patch", "update"}
        assert rules_for(role, "promptalias.io", f"{plural}/status") == {"get", "patch", "update"}
        assert rules_for(role, "promptalias.io", f"{plural}/finalizers") == {"update"}
    assert rules_for(role, "", "configmaps") == reader | {"create", "patch"}  # no update/delete: unused
    assert rules_for(role, "", "secrets") == {"get"}  # by name only: never list or watch every Secret
    assert rules_for(role, "", "events") == {"create", "patch"}
    assert rules_for(role, "events.k8s.io", "events") == {"create", "patch"}
    assert rules_for(role, "", "namespaces") == reader
    assert rules_for(role, "apiextensions.k8s.io", "customresourcedefinitions") == reader
    assert rules_for(role, "kopf.dev", "clusterkopfpeerings") == reader | {"patch", "create"}
    assert rules_for(role, "kopf.dev", "kopfpeerings") == reader | {"patch", "create"}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        assert not rule.get("nonResourceURLs"), rule
    granted = {
        (group, res) for rule in role["rules"] for group in rule["apiGroups"] for res in rule["resources"]
    }
    assert ("", "pods") not in granted
    assert not any(group in {"rbac.authorization.k8s.io", "apps"} for group, _ in granted)
    binding = one(render(chart_helm), "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "promptalias", "namespace": NAMESPACE}]


def test_namespace_mode_uses_roles_per_namespace_and_cluster_role_for_cluster_scope(
    chart_helm: Helm,
) -> None:
    objects = render(chart_helm, CHART / "ci" / "namespaced-values.yaml")
    cluster_role = one(objects, "ClusterRole")
    cluster_resources = {res for rule in cluster_role["rules"] for res in rule["resources"]}
    assert cluster_resources == {
        "clusterpromptregistries",
        "clusterpromptregistries/status",
        "clusterpromptregistries/finalizers",
        "namespaces",
        "customresourcedefinitions",
        "clusterkopfpeerings",
    }
    roles = {role["metadata"]["namespace"]: role for role in by_kind(objects, "Role")}
    assert set(roles) == {"promptalias-ci-team-a", "promptalias-ci-team-b", "promptalias-ci-secrets"}
    for namespace in ("promptalias-ci-team-a", "promptalias-ci-team-b"):
        assert rules_for(roles[namespace], "", "configmaps") == {"get", "list", "watch", "create", "patch"}
        assert rules_for(roles[namespace], "promptalias.io", "promptaliases") >= {"list", "watch"}
        assert rules_for(roles[namespace], "", "secrets") == {"get"}
    # The extra Secrets namespace grants exactly Secrets get, nothing else.
    assert roles["promptalias-ci-secrets"]["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    ]
    bindings = {b["metadata"]["namespace"]: b for b in by_kind(objects, "RoleBinding")}
    assert set(bindings) == set(roles)
    args = container(objects)["args"]
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=promptalias-ci-team-a",
        "--namespace=promptalias-ci-team-b",
    ]
    assert "--all-namespaces" not in args
    assert "--namespace-selector=promptalias.io/managed!=false" in args
    from promptalias.reconcile.scope import parse_selector, selected

    selector = parse_selector("promptalias.io/managed!=false")  # the operator's own parser accepts it
    assert not selected(selector, {"promptalias.io/managed": "false"})


def test_values_schema_rejects_unknown_and_invalid_values(chart_helm: Helm) -> None:
    for bad in (
        {"replicaCont": 3},
        {"image": {"repo": "x"}},
        {"webhook": {"certManager": {"enabld": True}}},
        {"logFormat": "yaml"},
        {"webhook": {"failurePolicy": "Retry"}},
        {"watchNamespaces": ["Not_A_Namespace"]},
        {"metrics": {"serviceMonitor": {"interval": "soon"}}},
        {"sidecarRbac": {"apps": {"x": {"namespace": "a"}}}},
    ):
        key = next(iter(bad))
        with pytest.raises(TestbedError, match=r"values don't meet the specifications|at '"):
            render(chart_helm, **{key: bad[key]})


def _schema_leaves(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        yield path, sub
        if path not in PASSTHROUGH:
            yield from _schema_leaves(sub, f"{path}.")


def _value_paths(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict) and path not in PASSTHROUGH:
            yield from _value_paths(value, f"{path}.")


def test_values_schema_is_strict_and_matches_values_yaml() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    leaves = dict(_schema_leaves(schema))
    for path, sub in leaves.items():
        assert sub.get("description"), f"{path}: no description in values.schema.json"
        if sub.get("type") == "object" and path not in PASSTHROUGH:
            assert sub.get("additionalProperties") is False, f"{path}: schema object is not strict"
    assert set(_value_paths(values)) == set(leaves) - {"global"}


def test_every_value_is_documented_by_a_comment_starting_with_its_name() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    undocumented = []
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = ".".join(name for _, name in stack)
        stack.append((indent, key))
        if parent.split(".")[0] in PASSTHROUGH or parent in PASSTHROUGH:
            continue  # a Kubernetes object's field, documented with its parent
        start = index - 1
        while start >= 0 and lines[start].strip().startswith("#"):
            start -= 1
        comment = [text.strip().lstrip("#").strip() for text in lines[start + 1 : index]]
        if not comment or not comment[0].startswith(f"{key} "):
            undocumented.append(f"{parent + '.' if parent else ''}{key} (line {index + 1})")
    assert not undocumented, f"values without a comment starting with their name: {undocumented}"


def test_camel_case_value_names() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in _value_paths(values):
        for part in path.split("."):
            assert re.fullmatch(r"[a-z][A-Za-z0-9]*", part), path


def test_self_signed_webhook_certificate_is_valid_for_the_service(chart_helm: Helm) -> None:
    from cryptography import x509

    objects = render(chart_helm, CHART / "ci" / "webhook-values.yaml")
    secret = one(objects, "Secret")
    webhook_config = one(objects, "MutatingWebhookConfiguration")
    (webhook,) = webhook_config["webhooks"]
    service = one([o for o in objects if o["metadata"]["name"].endswith("-webhook")], "Service")
    assert webhook["clientConfig"]["service"] == {
        "name": service["metadata"]["name"],
        "namespace": NAMESPACE,
        "path": "/inject-sidecar",
        "port": 443,
    }
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{service['metadata']['name']}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    assert secret["metadata"]["name"] in json.dumps(one(objects, "Deployment"))

    operator = container(objects)
    assert "--webhook-listen=0.0.0.0:9443" in operator["args"]
    assert "--webhook-cert-dir=/etc/promptalias/webhook" in operator["args"]
    assert webhook["rules"][0]["resources"] == ["pods"]
    assert "promptalias.io/inject" in webhook["matchConditions"][0]["expression"]
    assert webhook["sideEffects"] == "None"
    assert webhook["objectSelector"]["matchExpressions"][0]["key"] == "promptalias.io/skip-injection"


def test_webhook_in_namespace_mode_only_injects_in_watched_namespaces(chart_helm: Helm) -> None:
    objects = render(chart_helm, CHART / "ci" / "namespaced-values.yaml", webhook={"enabled": True})
    (webhook,) = one(objects, "MutatingWebhookConfiguration")["webhooks"]
    assert webhook["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": ["promptalias-ci-team-a", "promptalias-ci-team-b"],
            }
        ]
    }


def test_cert_manager_mode_issues_a_certificate_and_injects_the_ca(chart_helm: Helm) -> None:
    objects = render(chart_helm, CHART / "ci" / "certmanager-values.yaml")
    assert not by_kind(objects, "Secret")  # cert-manager writes it
    certificate = one(objects, "Certificate")
    issuer = one(objects, "Issuer")
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}
    assert certificate["spec"]["secretName"] == "promptalias-webhook-tls"
    config = one(objects, "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{certificate['metadata']['name']}"
    )
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"

    external = render(
        chart_helm,
        CHART / "ci" / "certmanager-values.yaml",
        webhook={
            "enabled": True,
            "certManager": {"enabled": True, "issuerRef": {"kind": "ClusterIssuer", "name": "ca"}},
        },
    )
    assert not by_kind(external, "Issuer")
    assert one(external, "Certificate")["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "ca"}


def test_sidecar_rbac_grants_only_named_projection_configmaps(chart_helm: Helm) -> None:
    objects = render(chart_helm, CHART / "ci" / "webhook-values.yaml")
    (role,) = [r for r in by_kind(objects, "Role") if "sidecar" in r["metadata"]["name"]]
    assert role["metadata"]["namespace"] == "promptalias-ci-team-a"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["invoice-parser-extra", "promptalias-invoice-parser-production"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    (binding,) = [b for b in by_kind(objects, "RoleBinding") if "sidecar" in b["metadata"]["name"]]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "invoice-parser", "namespace": "promptalias-ci-team-a"}
    ]
    with pytest.raises(TestbedError, match="list at least one of promptAliases or configMaps"):
        render(chart_helm, sidecarRbac={"apps": {"empty": {"namespace": "a", "serviceAccount": "b"}}})


def test_projection_configmap_name_rule_matches_the_operator() -> None:
    """sidecarRbac derives ConfigMap names as promptalias-<PromptAlias name>, like the projection."""
    from promptalias.projection.render import configmap_name

    assert configmap_name("invoice-parser-production") == "promptalias-invoice-parser-production"


def test_minimal_values_render_no_crds_rbac_or_service_account(chart_helm: Helm) -> None:
    objects = render(chart_helm, CHART / "ci" / "minimal-values.yaml")
    assert sorted({obj["kind"] for obj in objects}) == ["Deployment"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "promptalias-existing"
    assert pod["containers"][0]["image"].endswith("@sha256:" + "0" * 64)
    with pytest.raises(TestbedError, match=r"serviceAccount\.name is required"):
        render(chart_helm, serviceAccount={"create": False})


def test_crds_can_be_left_out_or_left_deletable(chart_helm: Helm) -> None:
    assert not by_kind(render(chart_helm, crds={"enabled": False}), "CustomResourceDefinition")
    kept = by_kind(render(chart_helm), "CustomResourceDefinition")
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in kept)
    deletable = by_kind(render(chart_helm, crds={"keep": False}), "CustomResourceDefinition")
    assert deletable
    assert all("helm.sh/resource-policy" not in c["metadata"].get("annotations", {}) for c in deletable)


def test_long_release_names_are_truncated_to_dns_labels(chart_helm: Helm) -> None:
    objects = chart_helm.template(
        CHART, release="a" * 53, namespace=NAMESPACE, set_json={"webhook": {"enabled": True}}
    )
    for obj in objects:
        if obj["kind"] != "CustomResourceDefinition":
            assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
    names = [o["metadata"]["name"] for o in objects if o["kind"] == "Service"]
    assert len(set(names)) == len(names)


def test_webhook_path_and_rules_match_the_operators_admission_handler(chart_helm: Helm) -> None:
    """kopf serves each admission handler at /<handler id>: the chart must call that path."""
    # The operator registers its mutating handler only when it serves webhooks (--webhook-listen
    # sets this variable); a fresh interpreter keeps this process's kopf registry untouched.
    probe = (
        "import json, kopf, promptalias.handlers; "
        "print(json.dumps([[h.id, sorted(h.operations or [])] "
        "for h in kopf.get_default_registry()._webhooks.get_all_handlers() if h.reason == 'mutating']))"
    )
    env = {**os.environ, "PROMPTALIAS_ADMISSION_LISTEN": "127.0.0.1:9443"}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    handlers = json.loads(result.stdout.strip().splitlines()[-1])
    (webhook,) = one(render(chart_helm, webhook={"enabled": True}), "MutatingWebhookConfiguration")[
        "webhooks"
    ]
    assert handlers == [
        [webhook["clientConfig"]["service"]["path"].lstrip("/"), webhook["rules"][0]["operations"]]
    ]
