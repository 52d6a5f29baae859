"""The chart's RBAC on the real apiserver, asked as the chart's ServiceAccount (impersonation):
enough for everything the operator does, and nothing more.

Two proofs: `kubectl auth can-i` for each thing the operator needs (and for the dangerous things it
must not do), and a SelfSubjectRulesReview whose rules, minus what any ServiceAccount gets, must be
exactly the operator's needs — so a rule added to the chart without a need fails here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from promptalias.testbed import Testbed
from promptalias.testbed.tools import helm

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "promptalias"
GROUP = "promptalias.io"
NAMESPACED_KINDS = ("promptaliases", "promptregistries", "promptexperiments")

# (apiGroup, resource, verb): what the operator does in a namespace it serves.
# Its own resources: kopf watches them, patches status, annotations and finalizers.
_NAMESPACED_NEEDS = {
    *(
        (GROUP, plural, verb)
        for plural in NAMESPACED_KINDS
        for verb in ("get", "list", "watch", "patch", "update")
    ),
    *(
        (GROUP, f"{plural}/status", verb)
        for plural in NAMESPACED_KINDS
        for verb in ("get", "patch", "update")
    ),
    *((GROUP, f"{plural}/finalizers", "update") for plural in NAMESPACED_KINDS),
    # Projection ConfigMaps: server-side apply, a read, a watch that restores them; the garbage
    # collector deletes them (no update, no delete).
    *(("", "configmaps", verb) for verb in ("get", "list", "watch", "create", "patch")),
    # Registry credentials, by name only.
    ("", "secrets", "get"),
    # Events for every transition (kopf posts core/v1; events.k8s.io for newer clients).
    ("", "events", "create"),
    ("", "events", "patch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
    # kopf peering in namespace mode.
    *(("kopf.dev", "kopfpeerings", verb) for verb in ("get", "list", "watch", "patch", "create")),
}
# What the operator does cluster-wide in both modes.
_CLUSTER_NEEDS = {
    *((GROUP, "clusterpromptregistries", verb) for verb in ("get", "list", "watch", "patch", "update")),
    *((GROUP, "clusterpromptregistries/status", verb) for verb in ("get", "patch", "update")),
    (GROUP, "clusterpromptregistries/finalizers", "update"),
    # ClusterPromptRegistry namespace selectors; kopf's namespace observer; the cluster id (kube-system uid).
    *(("", "namespaces", verb) for verb in ("get", "list", "watch")),
    # kopf resource discovery.
    *(("apiextensions.k8s.io", "customresourcedefinitions", verb) for verb in ("get", "list", "watch")),
    # kopf peering in cluster-wide mode.
    *(("kopf.dev", "clusterkopfpeerings", verb) for verb in ("get", "list", "watch", "patch", "create")),
}


@dataclass(frozen=True)
class Install:
    namespace: str
    service_account: str
    watched: tuple[str, ...] = ()
    secret_only: tuple[str, ...] = ()

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def _namespace(testbed: Testbed, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    testbed.kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="module")
def cluster_wide(testbed: Testbed) -> Iterator[Install]:
    namespace = _namespace(testbed, "rbac-cw")
    chart_helm = helm(testbed.kubeconfig)
    chart_helm.run("install", "cw", str(CHART), "-n", namespace, "--set", "crds.enabled=false")
    yield Install(namespace, "cw-promptalias")
    chart_helm.run("uninstall", "cw", "-n", namespace, "--wait", "--timeout", "60s", check=False)
    testbed.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.fixture(scope="module")
def namespaced(testbed: Testbed) -> Iterator[Install]:
    namespace = _namespace(testbed, "rbac-ns")
    watched = (_namespace(testbed, "rbac-team-a"), _namespace(testbed, "rbac-team-b"))
    secrets = (_namespace(testbed, "rbac-secrets"),)
    chart_helm = helm(testbed.kubeconfig)
    chart_helm.run(
        "install",
        "ns",
        str(CHART),
        "-n",
        namespace,
        "--set",
        "crds.enabled=false",
        "--set-json",
        f"watchNamespaces={json.dumps(list(watched))}",
        "--set-json",
        f"rbac.secretNamespaces={json.dumps(list(secrets))}",
    )
    yield Install(namespace, "ns-promptalias", watched, secrets)
    chart_helm.run("uninstall", "ns", "-n", namespace, "--wait", "--timeout", "60s", check=False)
    for name in (namespace, *watched, *secrets):
        testbed.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module", autouse=True)
def crds(testbed: Testbed) -> None:
    """`kubectl auth can-i` resolves resource types through discovery: install crds/ (idempotent)."""
    manager = "--field-manager=promptalias-rbac-tests"
    testbed.kubectl("apply", "--server-side", "--force-conflicts", manager, "-f", str(ROOT / "crds"))
    names = [f"crd/{plural}.{GROUP}" for plural in (*NAMESPACED_KINDS, "clusterpromptregistries")]
    testbed.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


def sar(
    testbed: Testbed, install: Install, verb: str, group: str, resource: str, namespace: str | None
) -> bool:
    """A SubjectAccessReview, for types the testbed may not serve (kopf's peering CRDs): unlike
    `kubectl auth can-i` it needs no discovery, and the authorizer answers the same question."""
    attributes = {"verb": verb, "group": group, "resource": resource}
    if namespace:
        attributes["namespace"] = namespace
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{install.namespace}", "system:authenticated"]
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": install.user, "groups": groups, "resourceAttributes": attributes},
    }
    out = testbed.kubectl("create", "-o", "json", "-f", "-", stdin=json.dumps(review)).stdout
    return bool(json.loads(out)["status"].get("allowed"))


def can(
    testbed: Testbed, install: Install, verb: str, resource: str, namespace: str | None, *extra: str
) -> bool:
    scope = ["--namespace", namespace] if namespace else ["--all-namespaces"]
    result = testbed.kubectl(
        "auth", "can-i", verb, resource, *scope, *extra, f"--as={install.user}", check=False
    )
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, result.stderr
    return answer == "yes"


def rules(testbed: Testbed, user: str, namespace: str) -> set[tuple[str, str, str]]:
    """(group, resource, verb) the user may use in `namespace`, from a SelfSubjectRulesReview."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace},
    }
    args = (
        "create",
        f"--as={user}",
        "--validate=false",
        "-o",
        "json",
        "-f",
        "-",
    )  # validation would list CRDs
    out = testbed.kubectl(*args, stdin=json.dumps(review)).stdout
    status = json.loads(out)["status"]
    assert not status.get("incomplete"), status.get("evaluationError")
    found = set()
    for rule in status.get("resourceRules", []):
        assert not rule.get("resourceNames"), rule  # the operator's rules never narrow by name
        for group in rule.get("apiGroups", []):
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    found.add((group, resource, verb))
    return found


def baseline(testbed: Testbed, namespace: str) -> set[tuple[str, str, str]]:
    """What every authenticated ServiceAccount may do (system:basic-user, discovery...)."""
    return rules(testbed, f"system:serviceaccount:{namespace}:default", namespace)


def test_cluster_wide_rules_are_exactly_the_operator_needs(testbed: Testbed, cluster_wide: Install) -> None:
    elsewhere = _namespace(testbed, "rbac-any")
    try:
        for namespace in (cluster_wide.namespace, elsewhere):
            granted = rules(testbed, cluster_wide.user, namespace) - baseline(testbed, namespace)
            expected = _NAMESPACED_NEEDS | _CLUSTER_NEEDS
            assert granted - expected == set(), "broader than needed"
            assert expected - granted == set(), "missing what the operator needs"
    finally:
        testbed.kubectl("delete", "namespace", elsewhere, "--wait=false")


def test_namespace_mode_rules_are_exactly_the_operator_needs_per_namespace(
    testbed: Testbed, namespaced: Install
) -> None:
    user = namespaced.user
    for namespace in namespaced.watched:
        granted = rules(testbed, user, namespace) - baseline(testbed, namespace)
        assert granted == _NAMESPACED_NEEDS | _CLUSTER_NEEDS, namespace
    for namespace in namespaced.secret_only:
        granted = rules(testbed, user, namespace) - baseline(testbed, namespace)
        assert granted == {("", "secrets", "get")} | _CLUSTER_NEEDS, namespace
    # Its own namespace is not watched: only the cluster-scoped rules apply there.
    own = namespaced.namespace
    assert rules(testbed, user, own) - baseline(testbed, own) == _CLUSTER_NEEDS


@pytest.mark.parametrize(
    ("verb", "resource", "extra"),
    [
        ("list", f"promptaliases.{GROUP}", ()),
        ("watch", f"promptaliases.{GROUP}", ()),
        ("patch", f"promptaliases.{GROUP}", ()),
        ("patch", f"promptaliases.{GROUP}", ("--subresource=status",)),
        ("update", f"promptaliases.{GROUP}", ("--subresource=finalizers",)),
        ("patch", f"promptexperiments.{GROUP}", ("--subresource=status",)),
        ("list", f"promptregistries.{GROUP}", ()),
        ("create", "configmaps", ()),
        ("patch", "configmaps", ()),
        ("get", "secrets", ()),
        ("create", "events", ()),
        ("create", "events.events.k8s.io", ()),
    ],
)
def test_cluster_wide_can_do_what_the_operator_needs(
    testbed: Testbed, cluster_wide: Install, verb: str, resource: str, extra: tuple[str, ...]
) -> None:
    assert can(testbed, cluster_wide, verb, resource, None, *extra)


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("list", f"clusterpromptregistries.{GROUP}"),
        ("patch", f"clusterpromptregistries.{GROUP}"),
        ("list", "namespaces"),
        ("get", "namespaces"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ],
)
def test_both_modes_can_do_the_cluster_scoped_work(
    testbed: Testbed, cluster_wide: Install, namespaced: Install, verb: str, resource: str
) -> None:
    for install in (cluster_wide, namespaced):
        assert can(testbed, install, verb, resource, None), install.user


def test_kopf_peering_is_allowed_where_each_mode_peers(
    testbed: Testbed, cluster_wide: Install, namespaced: Install
) -> None:
    for verb in ("get", "list", "watch", "patch", "create"):
        assert sar(testbed, cluster_wide, verb, "kopf.dev", "clusterkopfpeerings", None), verb
        assert sar(testbed, cluster_wide, verb, "kopf.dev", "kopfpeerings", None), verb
        for namespace in namespaced.watched:
            assert sar(testbed, namespaced, verb, "kopf.dev", "kopfpeerings", namespace), verb
        assert not sar(testbed, namespaced, verb, "kopf.dev", "kopfpeerings", namespaced.namespace), verb
    for verb in ("delete", "update", "deletecollection"):
        assert not sar(testbed, cluster_wide, verb, "kopf.dev", "clusterkopfpeerings", None), verb


@pytest.mark.parametrize(
    ("verb", "resource", "why"),
    [
        ("list", "secrets", "listing would read every Secret in the cluster"),
        ("watch", "secrets", "watching would stream every Secret"),
        ("create", "secrets", "the operator never writes Secrets"),
        ("create", "pods", "the operator never runs workloads"),
        ("create", "deployments.apps", "the operator never runs workloads"),
        ("create", f"promptaliases.{GROUP}", "users declare aliases, the operator never creates them"),
        ("delete", f"promptaliases.{GROUP}", "the operator never deletes a user's resource"),
        ("update", "customresourcedefinitions.apiextensions.k8s.io", "CRDs are installed by the chart"),
        ("delete", "namespaces", "far beyond its job"),
        ("delete", "configmaps", "the garbage collector deletes projections, never the operator"),
        ("update", "configmaps", "projections are server-side applied (patch)"),
        ("create", "clusterroles.rbac.authorization.k8s.io", "privilege escalation"),
        ("create", "rolebindings.rbac.authorization.k8s.io", "privilege escalation"),
        ("impersonate", "users", "privilege escalation"),
        ("create", "serviceaccounts/token", "minting tokens for other identities"),
        ("get", "nodes", "not needed"),
        (
            "create",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io",
            "the chart registers the webhook",
        ),
    ],
)
def test_neither_mode_can_do_what_the_operator_must_not(
    testbed: Testbed, cluster_wide: Install, namespaced: Install, verb: str, resource: str, why: str
) -> None:
    for install in (cluster_wide, namespaced):
        for namespace in (None, install.namespace, *install.watched):
            assert not can(testbed, install, verb, resource, namespace), f"{install.user}: {why}"


def test_namespace_mode_stays_inside_its_namespaces(testbed: Testbed, namespaced: Install) -> None:
    watched, secrets_only = namespaced.watched[0], namespaced.secret_only[0]
    outside = namespaced.namespace  # the release namespace is not watched
    for namespace in namespaced.watched:
        assert can(testbed, namespaced, "patch", "configmaps", namespace)
        assert can(testbed, namespaced, "watch", f"promptaliases.{GROUP}", namespace)
    assert can(testbed, namespaced, "get", "secrets", secrets_only)
    assert not can(testbed, namespaced, "get", "configmaps", secrets_only)
    assert not can(testbed, namespaced, "list", f"promptaliases.{GROUP}", secrets_only)
    for verb in ("get", "list", "create", "patch"):
        assert not can(testbed, namespaced, verb, "configmaps", outside), verb
    assert not can(testbed, namespaced, "get", "secrets", outside)
    assert not can(testbed, namespaced, "list", f"promptaliases.{GROUP}", None)  # not cluster-wide
    assert not can(testbed, namespaced, "list", "configmaps", None)
    assert can(testbed, namespaced, "list", f"promptaliases.{GROUP}", watched)


def test_sidecar_rbac_reads_only_the_named_projections(testbed: Testbed, namespace: str) -> None:
    chart_helm = helm(testbed.kubeconfig)
    testbed.kubectl("create", "serviceaccount", "invoice-parser", "-n", namespace)
    apps = {
        "invoice-parser": {
            "namespace": namespace,
            "serviceAccount": "invoice-parser",
            "promptAliases": ["ip"],
        }
    }
    release = f"sc-{uuid.uuid4().hex[:6]}"
    chart_helm.run(
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--set",
        "crds.enabled=false",
        "--set",
        "rbac.create=false",
        "--set-json",
        f"sidecarRbac={json.dumps({'apps': apps})}",
    )
    try:
        app = Install(namespace, "invoice-parser")
        for verb in ("get", "list", "watch"):
            assert can(testbed, app, verb, "configmaps/promptalias-ip", namespace), verb
            assert not can(testbed, app, verb, "configmaps/promptalias-other", namespace), verb
        assert not can(testbed, app, "list", "configmaps", namespace)  # without a name: everything
        assert not can(testbed, app, "patch", "configmaps/promptalias-ip", namespace)
        assert not can(testbed, app, "get", "secrets", namespace)
    finally:
        chart_helm.run("uninstall", release, "-n", namespace, check=False)
