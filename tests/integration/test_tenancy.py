"""Tenancy (issue 11 §2): one operator, one MLflow, several namespaces. One tenant can never read
another's prompts through a cache, nor move an alias another namespace holds.

Each attack runs against the session operator and the real MLflow: the attacker's resource gets
a NotAuthorized condition and a Warning Event, and MLflow is left exactly as it was.

Namespaces: `namespace` (the attacker's, with its own PromptRegistry `mlflow`, which gives it write
access to every prompt by default) and `victim` (whose access comes from a ClusterPromptRegistry
condition with writePrompts, granted by the cluster admin, and so outranks the attacker's).
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kit import OperatorProcess, apply_yaml, get_object, wait_for
from promptalias.registry import MlflowRegistry, RegistryAuthError, RegistryConfig, VersionCache
from promptalias.testbed import MlflowServer, Testbed
from promptalias.testbed.mlflowserver import ADMIN_USER

pytestmark = pytest.mark.integration

OWNER_TAG = "promptalias.io/owner.production"
MOVED_TAG = "promptalias.io/moved.production"


# ---- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def victim(namespace: str, k8s_api: Any) -> Iterator[str]:
    """A second namespace (the victim's), served by the session operator."""
    from kubernetes import client

    name = f"{namespace[:50]}-v"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture
def shared(testbed: Testbed, namespace: str, victim: str, prompt_name: str, registry: str) -> Iterator[str]:
    """A ClusterPromptRegistry: the victim may write the test's prompt, the attacker may only read."""
    name = f"shared-{uuid.uuid4().hex[:8]}"
    apply_yaml(
        testbed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: ClusterPromptRegistry
metadata: {{name: {name}}}
spec:
  trackingUri: {testbed.mlflow_uri}
  refreshInterval: 2s
  conditions:
  - namespaces: [{victim}]
    writePrompts: ["{prompt_name[:10]}*"]
  - namespaces: [{namespace}]
""",
    )
    try:
        wait_for(lambda: ready(testbed, "clusterpromptregistry", None, name)[0] == "True", 30, "shared Ready")
        yield name
    finally:
        testbed.kubectl("delete", "clusterpromptregistry", name, "--wait=false")


def register(prompt: str, count: int) -> None:
    import mlflow.genai

    for n in range(1, count + 1):
        mlflow.genai.register_prompt(name=prompt, template=f"v{n}: parse {{{{invoice}}}}")


def mlflow_model(uri: str, prompt: str, auth: str | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/registered-models/get?{urllib.parse.urlencode({'name': prompt})}"
    )
    if auth:
        request.add_header("Authorization", auth)
    with urllib.request.urlopen(request, timeout=10) as response:
        model: dict[str, Any] = json.loads(response.read())["registered_model"]
    return model


def aliases(uri: str, prompt: str, auth: str | None = None) -> dict[str, int]:
    return {a["alias"]: int(a["version"]) for a in mlflow_model(uri, prompt, auth).get("aliases", [])}


def tags(uri: str, prompt: str) -> dict[str, str]:
    return {t["key"]: t["value"] for t in mlflow_model(uri, prompt).get("tags", [])}


def version_tags(uri: str, prompt: str, version: int) -> dict[str, str]:
    query = urllib.parse.urlencode({"name": prompt, "version": str(version)})
    with urllib.request.urlopen(f"{uri}/api/2.0/mlflow/model-versions/get?{query}", timeout=10) as response:
        found = json.loads(response.read())["model_version"]
    return {t["key"]: t["value"] for t in found.get("tags", [])}


def move(prompt: str, version: int, alias: str = "production") -> None:
    import mlflow.genai

    mlflow.genai.set_prompt_alias(prompt, alias=alias, version=version)


def alias_yaml(
    namespace: str,
    name: str,
    prompt: str,
    version: int | None,
    ref: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> str:
    body: dict[str, Any] = {
        "apiVersion": "promptalias.io/v1alpha1",
        "kind": "PromptAlias",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {"registryRef": ref or {"name": "mlflow"}, "prompt": prompt, "alias": "production"},
    }
    if version is not None:
        body["spec"]["version"] = version
    return json.dumps(body)


def cluster_ref(name: str) -> dict[str, str]:
    return {"kind": "ClusterPromptRegistry", "name": name}


def ready(
    testbed: Testbed, kind: str, namespace: str | None, name: str
) -> tuple[str | None, str | None, str]:
    for cond in (get_object(testbed, kind, namespace, name).get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return cond["status"], cond["reason"], cond.get("message", "")
    return None, None, ""


def current(testbed: Testbed, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The status, once it was computed for the object's current generation."""
    obj = get_object(testbed, kind, namespace, name)
    st: dict[str, Any] = obj.get("status") or {}
    return st if st.get("observedGeneration") == obj["metadata"]["generation"] else None


def _waiting(testbed: Testbed, kind: str, namespace: str, name: str, what: str, done: Any) -> Any:
    """wait_for, failing with the object's last status (what the operator said instead)."""
    try:
        return wait_for(done, 60, what)
    except AssertionError as exc:
        st = get_object(testbed, kind, namespace, name).get("status")
        raise AssertionError(f"{exc}; last status: {json.dumps(st)}") from None


def wait_synced(testbed: Testbed, namespace: str, name: str, version: int) -> None:
    def done() -> bool:
        st = current(testbed, "promptalias", namespace, name)
        return st is not None and st.get("resolvedVersion") == version and ready_is(st, "True", "Synced")

    _waiting(testbed, "promptalias", namespace, name, f"{namespace}/{name} Synced at version {version}", done)


def wait_refused(
    testbed: Testbed, kind: str, namespace: str, name: str, reason: str = "NotAuthorized"
) -> str:
    def done() -> str | None:
        st = current(testbed, kind, namespace, name)
        if st is None or not ready_is(st, "False", reason):
            return None
        stalled: dict[str, Any] = next((c for c in st.get("conditions") or [] if c["type"] == "Stalled"), {})
        ready_message = next(c["message"] for c in st["conditions"] if c["type"] == "Ready")
        return str(ready_message) if stalled.get("status") == "True" else None

    what = f"{kind} {namespace}/{name} Stalled with reason {reason}"
    message: str = _waiting(testbed, kind, namespace, name, what, done)
    return message


def ready_is(status: dict[str, Any], value: str, reason: str) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == value and c["reason"] == reason
        for c in status.get("conditions") or []
    )


def warnings(testbed: Testbed, namespace: str, name: str) -> list[tuple[str, str]]:
    out = json.loads(testbed.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    return [
        (e["reason"], e.get("message", ""))
        for e in out["items"]
        if e["involvedObject"].get("name") == name and e["type"] == "Warning"
    ]


def wait_warning(testbed: Testbed, namespace: str, name: str, reason: str = "NotAuthorized") -> str:
    found: str = wait_for(
        lambda: next((m for r, m in warnings(testbed, namespace, name) if r == reason), None),
        20,
        f"a Warning Event {reason} on {namespace}/{name}",
    )
    return found


def has_projection(testbed: Testbed, namespace: str, name: str) -> bool:
    result = testbed.kubectl("get", "configmap", f"promptalias-{name}", "-n", namespace, check=False)
    return result.returncode == 0


# ---- 1. caches never cross credentials -----------------------------------------------------------


def _mlflow_admin(server: MlflowServer, path: str, body: dict[str, str]) -> None:
    admin = base64.b64encode(f"{ADMIN_USER}:{server.admin_password}".encode()).decode()
    request = urllib.request.Request(
        f"{server.uri}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Basic {admin}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture
def denied_user(basic_auth_mlflow: MlflowServer, auth_prompt: str) -> tuple[str, str]:
    """A basic-auth user whom MLflow refuses the prompt: a DENY grant on it (MLflow's auth REST API)
    overrides the server's default READ."""
    username, password = f"bob-{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex}"
    _mlflow_admin(
        basic_auth_mlflow, "/api/2.0/mlflow/users/create", {"username": username, "password": password}
    )
    grant = {
        "username": username,
        "resource_type": "prompt",
        "resource_id": auth_prompt,
        "permission": "DENY",
    }
    _mlflow_admin(basic_auth_mlflow, "/api/3.0/mlflow/users/permissions/grant", grant)
    return username, password


@pytest.fixture
def auth_prompt(basic_auth_mlflow: MlflowServer, prompt_name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from promptalias.registry.testing import register_prompt_versions

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", basic_auth_mlflow.admin_password)
    register_prompt_versions(basic_auth_mlflow.uri, prompt_name, ["one {{x}}", "two {{x}}"])
    return prompt_name


def test_the_version_cache_never_serves_one_credentials_read_to_another(
    basic_auth_mlflow: MlflowServer, auth_prompt: str, denied_user: tuple[str, str]
) -> None:
    admin = RegistryConfig(
        basic_auth_mlflow.uri, username=ADMIN_USER, password=basic_auth_mlflow.admin_password
    )
    bob = RegistryConfig(basic_auth_mlflow.uri, username=denied_user[0], password=denied_user[1])
    cache = VersionCache()  # one cache for both, as the operator's process-wide one

    async def scenario() -> None:
        async with MlflowRegistry(admin, cache=cache) as allowed, MlflowRegistry(bob, cache=cache) as refused:
            assert (await allowed.get_version(auth_prompt, 1)).template == "one {{x}}"
            with pytest.raises(RegistryAuthError) as info:
                await refused.get_version(auth_prompt, 1)
            assert info.value.status == 403

    asyncio.run(scenario())


def _secret_and_registry(testbed: Testbed, namespace: str, uri: str, username: str, password: str) -> None:
    testbed.kubectl(
        "create",
        "secret",
        "generic",
        "mlflow-auth",
        "-n",
        namespace,
        f"--from-literal=username={username}",
        f"--from-literal=password={password}",
    )
    apply_yaml(
        testbed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptRegistry
metadata: {{name: secured, namespace: {namespace}}}
spec:
  trackingUri: {uri}
  refreshInterval: 2s
  timeout: 30s  # the basic-auth server has one worker, and the test machine may be loaded
  auth: {{secretRef: {{name: mlflow-auth}}}}
""",
    )


def test_a_namespace_mlflow_refuses_never_gets_anothers_prompt_projected(
    testbed: Testbed,
    namespace: str,
    victim: str,
    operator_process: OperatorProcess,
    basic_auth_mlflow: MlflowServer,
    auth_prompt: str,
    denied_user: tuple[str, str],
) -> None:
    uri = basic_auth_mlflow.uri
    admin_auth = (
        "Basic " + base64.b64encode(f"{ADMIN_USER}:{basic_auth_mlflow.admin_password}".encode()).decode()
    )
    _secret_and_registry(testbed, victim, uri, ADMIN_USER, basic_auth_mlflow.admin_password)
    _secret_and_registry(testbed, namespace, uri, *denied_user)
    ref = {"name": "secured"}
    apply_yaml(testbed, alias_yaml(victim, "allowed", auth_prompt, 1, ref))
    wait_synced(testbed, victim, "allowed", 1)
    # The refused namespace follows the same alias on the same server, with its own credentials.
    apply_yaml(testbed, alias_yaml(namespace, "refused", auth_prompt, None, ref))
    message = wait_refused(testbed, "promptalias", namespace, "refused", reason="InvalidRegistry")
    assert "MLflow refused the credentials" in message
    assert "403" in message or "permission" in message

    # The allowed namespace moves the alias: its poller and its own write refresh what it read, and
    # wake every PromptAlias of the prompt, the refused one too (non-fresh passes that, keyed by
    # endpoint, were served the allowed namespace's snapshot and cached version).
    testbed.kubectl(
        "patch", "promptalias", "allowed", "-n", victim, "--type=merge", "-p", '{"spec":{"version":2}}'
    )
    wait_synced(testbed, victim, "allowed", 2)
    assert aliases(uri, auth_prompt, admin_auth) == {"production": 2}
    checks: list[str] = []

    def polled_twice() -> bool:
        stamp = (get_object(testbed, "promptregistry", namespace, "secured").get("status") or {}).get(
            "lastCheckTime"
        )
        if stamp and stamp not in checks:
            checks.append(stamp)
        return len(checks) >= 3

    wait_for(polled_twice, 30, "two more polls of the refused namespace's registry")
    st = get_object(testbed, "promptalias", namespace, "refused").get("status") or {}
    assert ready_is(st, "False", "InvalidRegistry"), st
    assert st.get("resolvedVersion") is None
    assert not has_projection(testbed, namespace, "refused")
    assert "InvalidRegistry" in {r for r, _ in warnings(testbed, namespace, "refused")}


# ---- 2. owning an alias needs authority ----------------------------------------------------------


def test_pinning_an_alias_another_namespace_follows_is_refused(
    testbed: Testbed, namespace: str, victim: str, shared: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 2)
    move(prompt_name, 1)
    apply_yaml(testbed, alias_yaml(victim, "follower", prompt_name, None, cluster_ref(shared)))
    wait_synced(testbed, victim, "follower", 1)

    apply_yaml(testbed, alias_yaml(namespace, "squatter", prompt_name, 2))  # its own PromptRegistry
    message = wait_refused(testbed, "promptalias", namespace, "squatter")
    assert f"is held by namespace {victim}: PromptAlias {victim}/follower follows it" in message
    assert "MLflow is unchanged" in message
    assert "will not set the alias" in wait_warning(testbed, namespace, "squatter")
    st = get_object(testbed, "promptalias", namespace, "squatter")["status"]
    assert st.get("owner") == f"{victim}/follower"
    assert aliases(testbed.mlflow_uri, prompt_name) == {"production": 1}
    assert OWNER_TAG not in tags(testbed.mlflow_uri, prompt_name)
    assert MOVED_TAG not in version_tags(testbed.mlflow_uri, prompt_name, 2)
    assert not has_projection(testbed, namespace, "squatter")


def test_rollback_of_an_alias_another_namespace_holds_is_refused(
    testbed: Testbed, namespace: str, victim: str, shared: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 2)
    move(prompt_name, 2)
    apply_yaml(testbed, alias_yaml(victim, "follower", prompt_name, None, cluster_ref(shared)))
    wait_synced(testbed, victim, "follower", 2)
    apply_yaml(testbed, alias_yaml(namespace, "reader", prompt_name, None))
    wait_synced(testbed, namespace, "reader", 2)

    testbed.kubectl("annotate", "promptalias", "reader", "-n", namespace, "promptalias.io/rollback-to=1")
    message = wait_refused(testbed, "promptalias", namespace, "reader")
    assert f"is held by namespace {victim}" in message
    assert "will not roll back the alias" in message
    assert "Remove the request annotation to withdraw it" in message
    assert "rollback" in wait_warning(testbed, namespace, "reader")
    assert aliases(testbed.mlflow_uri, prompt_name) == {"production": 2}
    obj = get_object(testbed, "promptalias", namespace, "reader")
    assert obj["metadata"]["annotations"]["promptalias.io/rollback-to"] == "1"  # kept: still refused
    assert obj["status"]["resolvedVersion"] == 2  # and still following MLflow

    # Withdrawn, the reader is a healthy follower again.
    testbed.kubectl("annotate", "promptalias", "reader", "-n", namespace, "promptalias.io/rollback-to-")
    wait_synced(testbed, namespace, "reader", 2)


def test_takeover_without_write_access_is_refused(
    testbed: Testbed, namespace: str, shared: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 2)
    move(prompt_name, 1)
    elsewhere = json.dumps({"cluster": "prod-eu", "namespace": "billing", "name": "parser"})
    set_tag = {"name": prompt_name, "key": OWNER_TAG, "value": elsewhere}
    request = urllib.request.Request(
        f"{testbed.mlflow_uri}/api/2.0/mlflow/registered-models/set-tag",
        data=json.dumps(set_tag).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    # The attacker may only read through the ClusterPromptRegistry.
    takeover = {"promptalias.io/takeover": "true"}
    apply_yaml(testbed, alias_yaml(namespace, "thief", prompt_name, 2, cluster_ref(shared), takeover))
    message = wait_refused(testbed, "promptalias", namespace, "thief")
    expected = f"ClusterPromptRegistry {shared} gives namespace {namespace} no write access"
    assert message.startswith(f"{expected} to prompt {prompt_name!r}")
    assert "will not take over alias 'production'" in message
    assert "take over" in wait_warning(testbed, namespace, "thief")
    assert aliases(testbed.mlflow_uri, prompt_name) == {"production": 1}
    assert tags(testbed.mlflow_uri, prompt_name)[OWNER_TAG] == elsewhere


def test_squatting_a_prompt_name_does_not_take_the_alias_from_its_team(
    testbed: Testbed, namespace: str, victim: str, shared: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 2)
    # First in: a namespace without write access claims the alias (the oldest-claim rule would hand
    # it the alias and leave the team that owns the prompt in Conflict).
    apply_yaml(testbed, alias_yaml(namespace, "early", prompt_name, 2, cluster_ref(shared)))
    message = wait_refused(testbed, "promptalias", namespace, "early")
    assert "no write access" in message
    wait_warning(testbed, namespace, "early")

    apply_yaml(testbed, alias_yaml(victim, "parser", prompt_name, 1, cluster_ref(shared)))
    wait_synced(testbed, victim, "parser", 1)
    assert aliases(testbed.mlflow_uri, prompt_name) == {"production": 1}
    assert json.loads(tags(testbed.mlflow_uri, prompt_name)[OWNER_TAG])["namespace"] == victim
    assert MOVED_TAG not in version_tags(testbed.mlflow_uri, prompt_name, 2)  # the squatter never wrote
    assert wait_refused(testbed, "promptalias", namespace, "early") == message


def test_a_grant_outranks_an_older_claim_from_a_namespaces_own_registry(
    testbed: Testbed, namespace: str, victim: str, shared: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 2)
    # The attacker's own PromptRegistry lets it write; nobody holds the alias yet, so it does.
    apply_yaml(testbed, alias_yaml(namespace, "early", prompt_name, 2))
    wait_synced(testbed, namespace, "early", 2)
    # The team the cluster admin granted the prompt arrives: the alias is theirs from now on.
    apply_yaml(testbed, alias_yaml(victim, "parser", prompt_name, 1, cluster_ref(shared)))
    message = wait_refused(testbed, "promptalias", namespace, "early")
    assert (
        f"held by namespace {victim}: PromptAlias {victim}/parser pins it with write access granted"
        in message
    )
    # The squatter's owner tag stands in MLflow until the team takes the alias over (audited).
    wait_refused(testbed, "promptalias", victim, "parser", reason="OwnedElsewhere")
    testbed.kubectl("annotate", "promptalias", "parser", "-n", victim, "promptalias.io/takeover=true")
    wait_synced(testbed, victim, "parser", 1)
    assert aliases(testbed.mlflow_uri, prompt_name) == {"production": 1}
    assert json.loads(tags(testbed.mlflow_uri, prompt_name)[OWNER_TAG])["namespace"] == victim
    assert wait_refused(testbed, "promptalias", namespace, "early") == message
    assert aliases(testbed.mlflow_uri, prompt_name) == {"production": 1}


def test_an_experiment_cannot_promote_into_an_alias_another_namespace_holds(
    testbed: Testbed, namespace: str, victim: str, shared: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 2)
    move(prompt_name, 1)
    apply_yaml(testbed, alias_yaml(victim, "follower", prompt_name, None, cluster_ref(shared)))
    wait_synced(testbed, victim, "follower", 1)
    apply_yaml(testbed, alias_yaml(namespace, "baseline", prompt_name, None))
    wait_synced(testbed, namespace, "baseline", 1)
    apply_yaml(
        testbed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptExperiment
metadata: {{name: ab, namespace: {namespace}}}
spec:
  baseline: {{name: baseline}}
  candidate: {{alias: candidate-x, version: 2}}
  weight: 10
  routingKey: user
""",
    )
    # Its candidate alias is its own to write (nobody holds it); it goes into MLflow.
    wait_for(
        lambda: (
            aliases(testbed.mlflow_uri, prompt_name).get("candidate-x") == 2
            and (current(testbed, "promptexperiment", namespace, "ab") or {}).get("phase") is not None
        ),
        30,
        "the experiment's candidate alias in MLflow",
    )
    testbed.kubectl("annotate", "promptexperiment", "ab", "-n", namespace, "promptalias.io/promote=true")
    message = wait_refused(testbed, "promptexperiment", namespace, "ab")
    assert f"is held by namespace {victim}" in message
    assert "will not promote into the alias" in message
    wait_warning(testbed, namespace, "ab")
    assert aliases(testbed.mlflow_uri, prompt_name) == {"production": 1, "candidate-x": 2}
    assert MOVED_TAG not in version_tags(testbed.mlflow_uri, prompt_name, 2)


# ---- 3. a ClusterPromptRegistry with no conditions serves nobody ---------------------------------


def test_a_cluster_registry_without_conditions_serves_no_namespace(
    testbed: Testbed, namespace: str, operator_process: OperatorProcess, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 1)
    name = f"open-{uuid.uuid4().hex[:8]}"
    apply_yaml(
        testbed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: ClusterPromptRegistry
metadata: {{name: {name}}}
spec: {{trackingUri: {testbed.mlflow_uri}, refreshInterval: 2s}}
""",
    )
    try:
        wait_for(
            lambda: ready(testbed, "clusterpromptregistry", None, name)[1] == "NoNamespacesAllowed",
            30,
            "the ClusterPromptRegistry to say it serves no namespace",
        )
        assert "the default is deny" in ready(testbed, "clusterpromptregistry", None, name)[2]
        apply_yaml(testbed, alias_yaml(namespace, "p", prompt_name, 1, cluster_ref(name)))
        message = wait_refused(testbed, "promptalias", namespace, "p", reason="InvalidRegistry")
        assert "has no spec.conditions, so it serves no namespace" in message
        assert "production" not in aliases(testbed.mlflow_uri, prompt_name)
    finally:
        testbed.kubectl("delete", "clusterpromptregistry", name, "--wait=false")
