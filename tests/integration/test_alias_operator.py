"""The PromptAlias reconciler end to end: a real operator process, apiserver and MLflow server."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from kit import (
    OperatorProcess,
    after_polls,
    apply_yaml,
    condition,
    condition_of,
    current_status,
    get_object,
    wait_for,
)
from promptalias.testbed import MlflowServer, Testbed

pytestmark = pytest.mark.integration

TEMPLATE = "v{n}: extract the invoice fields from {{{{text}}}}"


def register(prompt: str, count: int, tags: dict[str, str] | None = None) -> None:
    import mlflow.genai

    for n in range(1, count + 1):
        mlflow.genai.register_prompt(name=prompt, template=TEMPLATE.format(n=n), tags=tags or {})


def mlflow_aliases(uri: str, prompt: str, auth: str | None = None) -> dict[str, int]:
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/registered-models/get?name={prompt}")
    if auth:
        request.add_header("Authorization", auth)
    with urllib.request.urlopen(request, timeout=5) as response:
        model = json.loads(response.read())["registered_model"]
    return {a["alias"]: int(a["version"]) for a in model.get("aliases", [])}


def mlflow_tags(uri: str, prompt: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{uri}/api/2.0/mlflow/registered-models/get?name={prompt}", timeout=5) as r:
        model = json.loads(r.read())["registered_model"]
    return {t["key"]: t["value"] for t in model.get("tags", [])}


def pa_yaml(namespace: str, name: str, prompt: str, alias: str, version: int | None, **spec: Any) -> str:
    version_line = f"\n  version: {version}" if version is not None else ""
    registry = spec.pop("registryRef", None)
    ref = json.dumps(registry) if registry else "{name: mlflow}"
    extra = "".join(f"\n  {key}: {json.dumps(value)}" for key, value in spec.items())
    return f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptAlias
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  registryRef: {ref}
  prompt: {prompt}
  alias: {alias}{version_line}{extra}
"""


def status(testbed: Testbed, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = get_object(testbed, "promptalias", namespace, name).get("status") or {}
    return result


def current(testbed: Testbed, namespace: str, name: str) -> dict[str, Any] | None:
    """The status once written for the current generation (None before)."""
    return current_status(get_object(testbed, "promptalias", namespace, name))


def ready_reason(testbed: Testbed, namespace: str, name: str) -> tuple[str | None, str | None]:
    ready = condition_of(current(testbed, namespace, name), "Ready")
    return ready.get("status"), ready.get("reason")


def wait_ready(
    testbed: Testbed, namespace: str, name: str, version: int, timeout: float = 30
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        st = current(testbed, namespace, name)
        if st is None or st.get("resolvedVersion") != version:
            return None
        ready = condition_of(st, "Ready")
        return st if (ready.get("status"), ready.get("reason")) == ("True", "Synced") else None

    result: dict[str, Any] = wait_for(done, timeout, f"{namespace}/{name} Ready at version {version}")
    return result


def wait_reason(
    testbed: Testbed, namespace: str, name: str, reason: str, timeout: float = 30
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        st = current(testbed, namespace, name)
        return st if condition_of(st, "Ready").get("reason") == reason else None

    result: dict[str, Any] = wait_for(done, timeout, f"{name} reason {reason}")
    return result


def events(testbed: Testbed, namespace: str, name: str) -> list[tuple[str, str, str]]:
    out = json.loads(testbed.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    return [
        (e["type"], e["reason"], e.get("message", ""))
        for e in out["items"]
        if e["involvedObject"].get("name") == name
    ]


def projection(testbed: Testbed, namespace: str, name: str, prompt: str, alias: str) -> dict[str, Any]:
    cm = get_object(testbed, "configmap", namespace, f"promptalias-{name}")
    doc: dict[str, Any] = json.loads(cm["data"][f"{prompt}.{alias}.json"])
    doc["_ownerReferences"] = cm["metadata"].get("ownerReferences")
    return doc


def test_invoice_parser_story(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    """production -> 2, apply 3, MLflow answers 3, patch back to 2 (rollback), history shows both."""
    register(prompt_name, 4)
    apply_yaml(testbed, pa_yaml(namespace, "parser", prompt_name, "production", 2))
    wait_ready(testbed, namespace, "parser", 2)
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 2}

    testbed.kubectl(
        "patch", "promptalias", "parser", "-n", namespace, "--type=merge", "-p", '{"spec":{"version":3}}'
    )
    wait_for(
        lambda: mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 3}, 10, "MLflow to say 3"
    )
    assert mlflow_client.get_prompt_version_by_alias(prompt_name, "production").version == 3
    st = wait_ready(testbed, namespace, "parser", 3)
    assert st["previousVersion"] == 2

    testbed.kubectl(
        "patch", "promptalias", "parser", "-n", namespace, "--type=merge", "-p", '{"spec":{"version":2}}'
    )
    st = wait_ready(testbed, namespace, "parser", 2)
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 2}
    moves = [(h["reason"], h.get("previousVersion"), h["version"]) for h in st["history"]]
    assert moves[-2:] == [("Applied", 2, 3), ("Rollback", 3, 2)]
    assert moves[0][0] in {"Applied", "Adopted"}
    assert all(h.get("actor") == "kubectl-patch" for h in st["history"][-2:])
    assert st["uri"] == f"prompts:/{prompt_name}@production"
    assert st["templateDigest"].startswith("sha256:")

    doc = projection(testbed, namespace, "parser", prompt_name, "production")
    assert doc["version"] == 2
    assert doc["template"] == TEMPLATE.format(n=2)
    assert doc["_ownerReferences"][0]["kind"] == "PromptAlias"
    reasons = {reason for _, reason, _ in events(testbed, namespace, "parser")}
    assert {"Applied", "Rollback"} <= reasons
    printed = testbed.kubectl("get", "promptalias", "parser", "-n", namespace).stdout
    assert "production" in printed
    assert "True" in printed


def test_missing_version_is_stalled_then_recovers(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 1)
    apply_yaml(testbed, pa_yaml(namespace, "ahead", prompt_name, "production", 2))
    st = wait_reason(testbed, namespace, "ahead", "VersionNotFound")
    assert condition(testbed, "promptalias", namespace, "ahead", "Stalled") == "True"
    assert "version 2" in next(c["message"] for c in st["conditions"] if c["type"] == "Ready")
    assert "production" not in mlflow_aliases(testbed.mlflow_uri, prompt_name)
    register_more = TEMPLATE.format(n=2)
    import mlflow.genai

    mlflow.genai.register_prompt(name=prompt_name, template=register_more)
    wait_ready(testbed, namespace, "ahead", 2)
    assert condition(testbed, "promptalias", namespace, "ahead", "Stalled") is None


def test_policy_refuses_untagged_version(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 2)
    apply_yaml(
        testbed,
        pa_yaml(
            namespace,
            "guarded",
            prompt_name,
            "production",
            2,
            policy={"requireVersionTags": {"approved": "true"}},
        ),
    )
    st = wait_reason(testbed, namespace, "guarded", "PolicyViolation")
    message = next(c["message"] for c in st["conditions"] if c["type"] == "Ready")
    assert "approved='true' (missing)" in message
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {}
    mlflow_client.set_prompt_version_tag(prompt_name, 2, "approved", "true")
    wait_ready(testbed, namespace, "guarded", 2)
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 2}


def test_conflict_oldest_wins_and_next_takes_over(
    testbed: Testbed,
    namespace: str,
    registry: str,
    prompt_name: str,
    mlflow_client: Any,
    k8s_api: Any,
    operator_process: OperatorProcess,
) -> None:
    from kubernetes import client

    register(prompt_name, 3)
    apply_yaml(testbed, pa_yaml(namespace, "first", prompt_name, "production", 2))
    wait_ready(testbed, namespace, "first", 2)
    other = f"{namespace}-b"
    client.CoreV1Api(k8s_api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        apply_yaml(
            testbed,
            f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptRegistry
metadata: {{name: mlflow, namespace: {other}}}
spec: {{trackingUri: "{testbed.mlflow_uri}", refreshInterval: 2s}}
""",
        )
        apply_yaml(testbed, pa_yaml(other, "second", prompt_name, "production", 3))
        # Another namespace's claim is refused by the tenancy rule (docs/operator.md, Tenancy): the
        # holder is the oldest claim of equal access, and only the holder's namespace may write.
        st = wait_reason(testbed, other, "second", "NotAuthorized")
        assert f"{namespace}/first" in st["owner"]
        assert condition(testbed, "promptalias", other, "second", "Stalled") == "True"
        after_polls(operator_process, other)  # drift polls that wake the loser: it must never write
        assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 2}

        testbed.kubectl("delete", "promptalias", "first", "-n", namespace, "--wait=true")
        wait_ready(testbed, other, "second", 3)
        assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 3}
    finally:
        client.CoreV1Api(k8s_api).delete_namespace(other)


def test_drift_is_corrected_with_enforce(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    import mlflow.genai

    register(prompt_name, 3)
    apply_yaml(testbed, pa_yaml(namespace, "enforced", prompt_name, "production", 2))
    wait_ready(testbed, namespace, "enforced", 2)
    mlflow.genai.set_prompt_alias(prompt_name, alias="production", version=1)
    wait_for(
        lambda: any(
            h["reason"] == "DriftCorrected" for h in status(testbed, namespace, "enforced").get("history", [])
        ),
        15,
        "DriftCorrected in history",
    )
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 2}
    entry = status(testbed, namespace, "enforced")["history"][-1]
    assert (entry["reason"], entry["previousVersion"], entry["version"]) == ("DriftCorrected", 1, 2)
    assert any(reason == "DriftCorrected" for _, reason, _ in events(testbed, namespace, "enforced"))


def test_drift_is_reported_with_report(
    testbed: Testbed,
    namespace: str,
    registry: str,
    prompt_name: str,
    mlflow_client: Any,
    operator_process: OperatorProcess,
) -> None:
    import mlflow.genai

    register(prompt_name, 3)
    apply_yaml(testbed, pa_yaml(namespace, "reported", prompt_name, "production", 2, driftPolicy="Report"))
    wait_ready(testbed, namespace, "reported", 2)
    mlflow.genai.set_prompt_alias(prompt_name, alias="production", version=3)
    wait_for(
        lambda: condition(testbed, "promptalias", namespace, "reported", "Drifted") == "True",
        15,
        "Drifted=True",
    )
    after_polls(operator_process, namespace)  # Report: later passes must leave MLflow where it is
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 3}
    st = status(testbed, namespace, "reported")
    assert st["resolvedVersion"] == 3
    observed = [h for h in st["history"] if h["reason"] == "Observed"]
    assert [(h["previousVersion"], h["version"]) for h in observed] == [(2, 3)]
    assert ready_reason(testbed, namespace, "reported") == ("False", "DriftDetected")
    assert condition(testbed, "promptalias", namespace, "reported", "Stalled") is None


@pytest.mark.parametrize(("policy", "kept"), [("Retain", True), ("Delete", False)])
def test_deletion_policy(
    testbed: Testbed,
    namespace: str,
    registry: str,
    prompt_name: str,
    mlflow_client: Any,
    policy: str,
    kept: bool,
) -> None:
    register(prompt_name, 2)
    apply_yaml(testbed, pa_yaml(namespace, "doomed", prompt_name, "production", 2, deletionPolicy=policy))
    wait_ready(testbed, namespace, "doomed", 2)
    assert "promptalias.io/owner.production" in mlflow_tags(testbed.mlflow_uri, prompt_name)
    testbed.kubectl("delete", "promptalias", "doomed", "-n", namespace, "--wait=true", "--timeout=60s")
    assert ("production" in mlflow_aliases(testbed.mlflow_uri, prompt_name)) is kept
    assert "promptalias.io/owner.production" not in mlflow_tags(testbed.mlflow_uri, prompt_name)
    wait_for(
        lambda: (
            testbed.kubectl("get", "configmap", "promptalias-doomed", "-n", namespace, check=False).returncode
            != 0
        ),
        30,
        "the projection ConfigMap to be garbage-collected",
    )


def test_registry_outage_then_recovery(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 3)
    apply_yaml(testbed, pa_yaml(namespace, "resilient", prompt_name, "production", 2))
    wait_ready(testbed, namespace, "resilient", 2)
    testbed.mlflow.stop()
    try:
        testbed.kubectl(
            "patch",
            "promptalias",
            "resilient",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec":{"version":3}}',
        )
        st = wait_reason(testbed, namespace, "resilient", "RegistryUnavailable", timeout=20)
        assert condition(testbed, "promptalias", namespace, "resilient", "Stalled") is None
        assert condition(testbed, "promptalias", namespace, "resilient", "Reconciling") == "True"
        assert st["resolvedVersion"] == 2  # the last good state is kept
        assert projection(testbed, namespace, "resilient", prompt_name, "production")["version"] == 2
    finally:
        testbed.mlflow.start()
    wait_ready(testbed, namespace, "resilient", 3, timeout=90)
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 3}
    assert condition(testbed, "promptalias", namespace, "resilient", "Reconciling") is None


def test_operator_killed_midway_converges_without_duplicate_history(
    testbed: Testbed,
    namespace: str,
    registry: str,
    prompt_name: str,
    mlflow_client: Any,
    operator_process: OperatorProcess,
) -> None:
    register(prompt_name, 3)
    apply_yaml(testbed, pa_yaml(namespace, "survivor", prompt_name, "production", 2))
    wait_ready(testbed, namespace, "survivor", 2)
    testbed.kubectl(
        "patch", "promptalias", "survivor", "-n", namespace, "--type=merge", "-p", '{"spec":{"version":3}}'
    )
    time.sleep(0.01)
    operator_process.kill()
    operator_process.start()
    st = wait_ready(testbed, namespace, "survivor", 3)
    after_polls(operator_process, namespace)  # drift checks and resumed workers have run
    st = status(testbed, namespace, "survivor")
    moves = [(h.get("previousVersion"), h["version"]) for h in st["history"]]
    assert moves.count((2, 3)) == 1, moves
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 3}


def test_a_move_overwritten_while_the_operator_was_down_stays_in_history(
    testbed: Testbed,
    namespace: str,
    registry: str,
    prompt_name: str,
    mlflow_client: Any,
    operator_process: OperatorProcess,
) -> None:
    """The operator moved the alias 2 -> 6 and was killed before its status write; while it was down
    someone moved the alias to 5. MLflow held 6 for a while (pods could serve it): history says so.

    The crash state is built by hand, exactly as the operator leaves it (pendingMove recorded in
    status, alias and audit tag written in MLflow), since a SIGKILL cannot be timed into that window.
    """
    from datetime import UTC, datetime

    from promptalias.reconcile.audit import audit_tag
    from promptalias.reconcile.ownership import Owner
    from promptalias.reconcile.timestamps import format_timestamp

    register(prompt_name, 6)
    apply_yaml(testbed, pa_yaml(namespace, "witness", prompt_name, "production", 2))
    wait_ready(testbed, namespace, "witness", 2)
    owner = Owner.from_tag(mlflow_tags(testbed.mlflow_uri, prompt_name)["promptalias.io/owner.production"])
    assert owner is not None
    operator_process.kill()
    try:
        testbed.kubectl(
            "patch", "promptalias", "witness", "-n", namespace, "--type=merge", "-p", '{"spec":{"version":6}}'
        )
        at = datetime.now(UTC).replace(microsecond=0)
        pending = {
            "version": 6,
            "previousVersion": 2,
            "time": format_timestamp(at),
            "reason": "Applied",
            "message": "alias moved from version 2 to 6",
        }
        testbed.kubectl(
            "patch",
            "promptalias",
            "witness",
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"pendingMove": pending}}),
        )
        mlflow_client.set_prompt_alias(prompt_name, "production", 6)
        key, value = audit_tag("production", by=str(owner), at=at, replaced=2)
        mlflow_client.set_prompt_version_tag(prompt_name, 6, key, value)
        mlflow_client.set_prompt_alias(prompt_name, "production", 5)  # someone, while we are down
    finally:
        operator_process.start()
    st = wait_ready(testbed, namespace, "witness", 6, timeout=60)
    moves = [(h["reason"], h.get("previousVersion"), h["version"]) for h in st["history"]]
    assert moves[-3:] == [("Applied", 2, 6), ("Observed", 6, 5), ("DriftCorrected", 5, 6)], moves
    assert st.get("pendingMove") is None
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 6}


def test_credentials_never_leak(
    testbed: Testbed,
    namespace: str,
    operator_process: OperatorProcess,
    basic_auth_mlflow: MlflowServer,
    prompt_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import base64

    from promptalias.registry.testing import register_prompt_versions

    password = basic_auth_mlflow.admin_password
    assert len(password) > 8
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    register_prompt_versions(basic_auth_mlflow.uri, prompt_name, ["one {{x}}", "two {{x}}"])
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    testbed.kubectl(
        "create",
        "secret",
        "generic",
        "mlflow-auth",
        "-n",
        namespace,
        "--from-literal=username=admin",
        f"--from-literal=password={password}",
    )
    apply_yaml(
        testbed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptRegistry
metadata: {{name: secured, namespace: {namespace}}}
spec:
  trackingUri: {basic_auth_mlflow.uri}
  refreshInterval: 2s
  auth: {{secretRef: {{name: mlflow-auth}}}}
---
apiVersion: promptalias.io/v1alpha1
kind: PromptRegistry
metadata: {{name: wrong, namespace: {namespace}}}
spec:
  trackingUri: {basic_auth_mlflow.uri}
  auth: {{secretRef: {{name: missing-secret}}}}
""",
    )
    wait_for(
        lambda: condition(testbed, "promptregistry", namespace, "secured", "Ready") == "True", 30, "Ready"
    )
    apply_yaml(
        testbed, pa_yaml(namespace, "secure", prompt_name, "production", 2, registryRef={"name": "secured"})
    )
    apply_yaml(
        testbed, pa_yaml(namespace, "broken", prompt_name, "staging", 1, registryRef={"name": "wrong"})
    )
    wait_ready(testbed, namespace, "secure", 2)
    basic = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
    assert mlflow_aliases(basic_auth_mlflow.uri, prompt_name, auth=basic) == {"production": 2}
    st = wait_reason(testbed, namespace, "broken", "InvalidRegistry")
    assert "missing-secret" in next(c["message"] for c in st["conditions"] if c["type"] == "Ready")

    everything = "\n".join(
        [
            testbed.kubectl(
                "get", "promptalias,promptregistry,configmap,events", "-n", namespace, "-o", "yaml"
            ).stdout,
            operator_process.log_path.read_text(errors="replace"),
        ]
    )
    encoded = base64.b64encode(password.encode()).decode()
    assert password not in everything
    assert encoded not in everything


def test_cluster_registry_only_serves_selected_namespaces(
    testbed: Testbed, namespace: str, operator_process: OperatorProcess, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 1)
    cluster_registry = f"shared-{prompt_name[-8:]}"
    apply_yaml(
        testbed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: ClusterPromptRegistry
metadata: {{name: {cluster_registry}}}
spec:
  trackingUri: {testbed.mlflow_uri}
  refreshInterval: 2s
  conditions:
  - namespaceSelector: {{matchLabels: {{team: billing}}}}
    writePrompts: ["*"]  # pinning writes the alias: a grant (docs/operator.md, Tenancy)
""",
    )
    try:
        ref = {"kind": "ClusterPromptRegistry", "name": cluster_registry}
        apply_yaml(testbed, pa_yaml(namespace, "outsider", prompt_name, "production", 1, registryRef=ref))
        st = wait_reason(testbed, namespace, "outsider", "InvalidRegistry")
        assert "does not allow namespace" in next(
            c["message"] for c in st["conditions"] if c["type"] == "Ready"
        )
        testbed.kubectl("label", "namespace", namespace, "team=billing")
        wait_ready(testbed, namespace, "outsider", 1)
    finally:
        testbed.kubectl("delete", "clusterpromptregistry", cluster_registry, "--wait=false")


def test_deleted_or_edited_projection_is_restored(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    """The operator must not trust its memory of what it applied: pods would lose their prompt."""
    register(prompt_name, 2)
    apply_yaml(testbed, pa_yaml(namespace, "projected", prompt_name, "production", 2))
    wait_ready(testbed, namespace, "projected", 2)
    original = projection(testbed, namespace, "projected", prompt_name, "production")
    cm = get_object(testbed, "configmap", namespace, "promptalias-projected")
    first_uid = cm["metadata"]["uid"]

    testbed.kubectl("delete", "configmap", "promptalias-projected", "-n", namespace, "--wait=true")

    def restored() -> dict[str, Any] | None:
        found = testbed.kubectl(
            "get", "configmap", "promptalias-projected", "-n", namespace, "-o", "json", check=False
        )
        if found.returncode != 0:
            return None
        body: dict[str, Any] = json.loads(found.stdout)
        return body if body["metadata"]["uid"] != first_uid else None

    wait_for(restored, 60, "the deleted projection ConfigMap to be recreated")
    assert projection(testbed, namespace, "projected", prompt_name, "production") == original

    # Edited by hand, hash annotation kept: the data is put back.
    key = f"{prompt_name}.production.json"
    forged = json.loads(get_object(testbed, "configmap", namespace, "promptalias-projected")["data"][key])
    forged["template"] = "edited by hand"
    patch = json.dumps({"data": {key: json.dumps(forged)}})
    testbed.kubectl(
        "patch", "configmap", "promptalias-projected", "-n", namespace, "--type=merge", "-p", patch
    )
    wait_for(
        lambda: projection(testbed, namespace, "projected", prompt_name, "production") == original,
        60,
        "the edited projection ConfigMap to be restored",
    )


@pytest.mark.parametrize("drift_policy", ["Report", "Enforce"])
def test_a_version_registered_after_the_spec_change_is_the_users_change(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any, drift_policy: str
) -> None:
    """GitOps merges spec.version 3 before v3 is registered: the failed first pass is not drift."""
    import mlflow.genai

    register(prompt_name, 2)
    apply_yaml(testbed, pa_yaml(namespace, "late", prompt_name, "production", 2, driftPolicy=drift_policy))
    wait_ready(testbed, namespace, "late", 2)
    testbed.kubectl(
        "patch", "promptalias", "late", "-n", namespace, "--type=merge", "-p", '{"spec":{"version":3}}'
    )

    def refused_at_this_generation() -> bool:
        obj = get_object(testbed, "promptalias", namespace, "late")
        st = obj.get("status") or {}
        return st.get("observedGeneration") == obj["metadata"]["generation"] and ready_reason(
            testbed, namespace, "late"
        ) == ("False", "VersionNotFound")

    wait_for(refused_at_this_generation, 30, "VersionNotFound for the new generation")
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 2}
    mlflow.genai.register_prompt(name=prompt_name, template=TEMPLATE.format(n=3))
    st = wait_ready(testbed, namespace, "late", 3, timeout=60)
    assert mlflow_aliases(testbed.mlflow_uri, prompt_name) == {"production": 3}
    entry = st["history"][-1]
    assert (entry["reason"], entry["previousVersion"], entry["version"]) == ("Applied", 2, 3)
    assert entry.get("actor") == "kubectl-patch"
    assert st.get("appliedVersion") == 3
    assert "pendingMove" not in st
    assert condition(testbed, "promptalias", namespace, "late", "Drifted") == "False"
    assert not [h for h in st["history"] if h["reason"] in ("DriftCorrected", "Observed")]


@pytest.mark.parametrize("field", ["token", "ca.crt"])
def test_a_secret_that_is_not_utf8_is_a_clear_condition_without_its_bytes(
    testbed: Testbed, namespace: str, operator_process: OperatorProcess, prompt_name: str, field: str
) -> None:
    import base64

    raw = b"\xff\xfeSECRETPART-" + prompt_name.encode() + b"\x80"
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "odd", "namespace": namespace},
        "data": {field: base64.b64encode(raw).decode()},
    }
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(body))
    extra = (
        "auth: {secretRef: {name: odd}}"
        if field == "token"
        else "tls: {caSecretRef: {name: odd, key: ca.crt}}"
    )
    uri = testbed.mlflow_uri if field == "token" else testbed.mlflow_uri.replace("http://", "https://")
    apply_yaml(
        testbed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptRegistry
metadata: {{name: odd, namespace: {namespace}}}
spec:
  trackingUri: {uri}
  {extra}
""",
    )
    apply_yaml(testbed, pa_yaml(namespace, "odd", prompt_name, "production", 1, registryRef={"name": "odd"}))
    st = wait_reason(testbed, namespace, "odd", "InvalidRegistry")
    message = next(c["message"] for c in st["conditions"] if c["type"] == "Ready")
    assert "is not UTF-8 text" in message
    everything = "\n".join(
        [
            testbed.kubectl("get", "promptalias,promptregistry,events", "-n", namespace, "-o", "yaml").stdout,
            operator_process.log_path.read_text(errors="replace"),
        ]
    )
    assert "SECRETPART" not in everything
    assert "0xff" not in everything
    assert base64.b64encode(raw).decode() not in everything
