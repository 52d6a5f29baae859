"""MLflow webhooks end to end: a real `mlflow server` (SQL backend, webhooks on) calls our operator.

The operator registers the webhook from the PromptRegistry's spec, MLflow signs every prompt-alias
change, the receiver verifies it and corrects an out-of-band move at once, long before the 60s
periodic check. Forged, unsigned and replayed deliveries are refused. Latencies are measured with
and without webhooks (printed; `-s` shows them) and written to the test's tmp dir.

This module runs its own MLflow server beside the testbed's: MLflow only calls https:// webhook
URLs unless MLFLOW_WEBHOOK_ALLOWED_SCHEMES allows http, and it caches the list of webhooks for
MLFLOW_WEBHOOK_CACHE_TTL (60 s) — a webhook registered after the cache was filled would stay silent
for up to a minute. The testbed's shared server sets neither.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kit import OperatorProcess, apply_yaml, condition, wait_for
from promptalias.registry.webhooks import DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from promptalias.testbed import MlflowServer, Testbed
from promptalias.testbed.ports import free_port

pytestmark = pytest.mark.integration

SECRET = "webhook-secret-" + uuid.uuid4().hex
ROUNDS = 5
TEMPLATE = "v{n}: summarize {{{{text}}}}"


# ---- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hooked_mlflow(testbed: Testbed) -> Iterator[MlflowServer]:
    """An MLflow server that calls http:// loopback webhooks and re-reads its webhook list every second."""
    extra = {"MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_CACHE_TTL": "1"}
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        server = testbed.start_extra_mlflow()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hook_namespace(k8s_api: Any) -> Iterator[str]:
    from kubernetes import client

    name = f"t-webhooks-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def hook_operator(
    testbed: Testbed, crds: Path, hook_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, str]]:
    """Our own operator, watching only the module's namespace, receiving webhooks on loopback."""
    port = free_port()
    listen = f"127.0.0.1:{port}"
    proc = OperatorProcess(
        testbed,
        tmp_path_factory.mktemp("hook-operator") / "operator.log",
        "--namespace",
        hook_namespace,
        env={
            "PROMPTALIAS_WEBHOOK_LISTEN": listen,
            "PROMPTALIAS_WEBHOOK_URL": f"http://{listen}/mlflow/webhook",
        },
    )
    proc.start()
    try:
        yield proc, f"http://{listen}"
    finally:
        proc.stop()


# ---- helpers -------------------------------------------------------------------------------------


def rest(
    uri: str, method: str, path: str, body: dict[str, Any] | None = None, **query: str
) -> dict[str, Any]:
    url = f"{uri}/api/2.0/mlflow/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    result: dict[str, Any] = json.loads(text) if text.strip() else {}
    return result


def register(uri: str, prompt: str, count: int) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for n in range(1, count + 1):
        client.register_prompt(name=prompt, template=TEMPLATE.format(n=n))


def set_alias_out_of_band(uri: str, prompt: str, alias: str, version: int) -> None:
    """What a person does in a notebook: mlflow's own client (three requests, like set_prompt_alias)."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri, registry_uri=uri).set_prompt_alias(prompt, alias, version)


def alias_of(uri: str, prompt: str, alias: str) -> int | None:
    model = rest(uri, "GET", "registered-models/get", name=prompt)["registered_model"]
    return next((int(a["version"]) for a in model.get("aliases", []) if a["alias"] == alias), None)


def our_webhooks(uri: str, namespace: str) -> list[dict[str, Any]]:
    hooks = rest(uri, "GET", "webhooks").get("webhooks") or []
    return [h for h in hooks if h["url"].endswith(f"/mlflow/webhook/{namespace}/hooked")]


def receiver_counts(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/mlflow/webhook/healthz", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def post(base: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{base}/mlflow/webhook/{path}", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def secret_yaml(namespace: str, value: str) -> str:
    encoded = base64.b64encode(value.encode()).decode()
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: mlflow-webhook, namespace: {namespace}}}
data: {{secret: {encoded}}}
"""


def registry_yaml(namespace: str, name: str, uri: str, interval: str, webhook: bool) -> str:
    hook = "\n  webhook: {enabled: true, secretRef: {name: mlflow-webhook}}" if webhook else ""
    return f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptRegistry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  trackingUri: {uri}
  refreshInterval: {interval}{hook}
"""


def alias_yaml(namespace: str, name: str, registry: str, prompt: str, version: int) -> str:
    return f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptAlias
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  registryRef: {{name: {registry}}}
  prompt: {prompt}
  alias: production
  version: {version}
"""


def wait_synced(testbed: Testbed, namespace: str, name: str, uri: str, prompt: str, version: int) -> None:
    wait_for(
        lambda: condition(testbed, "promptalias", namespace, name, "Ready") == "True", 30, f"{name} Ready"
    )
    wait_for(lambda: alias_of(uri, prompt, "production") == version, 10, f"production -> {version}")


def measure(uri: str, prompt: str, desired: int, other: int, timeout: float) -> float:
    """Move the alias out of band; seconds until the operator has put it back."""
    set_alias_out_of_band(uri, prompt, "production", other)
    moved = time.perf_counter()
    deadline = moved + timeout
    while time.perf_counter() < deadline:
        if alias_of(uri, prompt, "production") == desired:
            return time.perf_counter() - moved
        time.sleep(0.005)
    raise AssertionError(f"production was not put back to {desired} within {timeout}s")


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    return f"median {statistics.median(ms):.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms (n={len(ms)})"


# ---- tests ----------------------------------------------------------------------------------------


def test_webhook_is_registered_and_corrects_drift_at_once(
    testbed: Testbed,
    hooked_mlflow: MlflowServer,
    hook_namespace: str,
    hook_operator: tuple[OperatorProcess, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    _, receiver = hook_operator
    ns, uri = hook_namespace, hooked_mlflow.uri
    apply_yaml(testbed, secret_yaml(ns, SECRET))
    apply_yaml(testbed, registry_yaml(ns, "hooked", uri, "60s", webhook=True))
    wait_for(
        lambda: condition(testbed, "promptregistry", ns, "hooked", "Ready") == "True", 30, "registry Ready"
    )

    # Registered once, for both alias events, and proven by MLflow's own test delivery.
    hooks = wait_for(lambda: our_webhooks(uri, ns), 30, "the webhook in MLflow")
    assert len(hooks) == 1
    assert {(e["entity"], e["action"]) for e in hooks[0]["events"]} == {
        ("PROMPT_ALIAS", "CREATED"),
        ("PROMPT_ALIAS", "DELETED"),
    }
    assert hooks[0]["status"] == "ACTIVE"
    assert "fingerprint=" in hooks[0]["description"]
    assert SECRET not in json.dumps(hooks)
    wait_for(lambda: receiver_counts(receiver)["accepted"] >= 1, 10, "MLflow's test delivery to be verified")

    prompt = f"hooked-{uuid.uuid4().hex[:8]}"
    register(uri, prompt, 3)
    apply_yaml(testbed, alias_yaml(ns, "summarizer", "hooked", prompt, 2))
    wait_synced(testbed, ns, "summarizer", uri, prompt, 2)

    with_webhook = [measure(uri, prompt, 2, 3, timeout=20) for _ in range(ROUNDS)]
    # A deleted alias (prompt_alias.deleted) is recreated just as fast.
    started = time.perf_counter()
    rest(uri, "DELETE", "registered-models/alias", {"name": prompt, "alias": "production"})
    wait_for(lambda: alias_of(uri, prompt, "production") == 2, 10, "the deleted alias to be recreated")
    after_delete = time.perf_counter() - started
    # Refresh is 60s: only the webhook explains corrections well inside one refresh
    # (latency itself is measured by `make bench`).
    assert max(with_webhook) < 20.0, with_webhook
    assert after_delete < 20.0

    # Without webhooks: the testbed's MLflow, polled every 2s by the same operator.
    apply_yaml(testbed, registry_yaml(ns, "polled", testbed.mlflow_uri, "2s", webhook=False))
    wait_for(
        lambda: condition(testbed, "promptregistry", ns, "polled", "Ready") == "True", 30, "registry Ready"
    )
    polled_prompt = f"polled-{uuid.uuid4().hex[:8]}"
    register(testbed.mlflow_uri, polled_prompt, 3)
    apply_yaml(testbed, alias_yaml(ns, "polled", "polled", polled_prompt, 2))
    wait_synced(testbed, ns, "polled", testbed.mlflow_uri, polled_prompt, 2)
    without = [measure(testbed.mlflow_uri, polled_prompt, 2, 3, timeout=15) for _ in range(ROUNDS)]

    report = {
        "with_webhook_s": with_webhook,
        "with_webhook_alias_deleted_s": after_delete,
        "without_webhook_refresh_2s_s": without,
    }
    out = tmp_path_factory.mktemp("webhook-latency") / "latency.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nout-of-band change -> corrected, with webhook:     {summary(with_webhook)}")
    print(f"out-of-band change -> corrected, polling every 2s: {summary(without)}")
    print(f"(written to {out})")
    assert statistics.median(with_webhook) < statistics.median(without)
    history = json.loads(testbed.kubectl("get", "promptalias", "summarizer", "-n", ns, "-o", "json").stdout)
    reasons = [entry["reason"] for entry in history["status"]["history"]]
    assert reasons.count("DriftCorrected") >= ROUNDS


def test_forged_unsigned_and_replayed_deliveries_are_rejected(
    testbed: Testbed,
    hooked_mlflow: MlflowServer,
    hook_namespace: str,
    hook_operator: tuple[OperatorProcess, str],
) -> None:
    _, receiver = hook_operator
    ns = hook_namespace
    apply_yaml(testbed, secret_yaml(ns, SECRET))
    apply_yaml(testbed, registry_yaml(ns, "hooked", hooked_mlflow.uri, "60s", webhook=True))
    wait_for(
        lambda: condition(testbed, "promptregistry", ns, "hooked", "Ready") == "True", 30, "registry Ready"
    )
    before = receiver_counts(receiver)

    def delivery(secret: str, *, age_s: float = 0) -> tuple[dict[str, str], bytes]:
        body = json.dumps(
            {
                "entity": "prompt_alias",
                "action": "deleted",
                "data": {"name": "invoice-parser", "alias": "production"},
            }
        ).encode()
        delivery_id, stamp = str(uuid.uuid4()), str(int(time.time() - age_s))
        return {
            "Content-Type": "application/json",
            DELIVERY_ID_HEADER: delivery_id,
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(secret, delivery_id, stamp, body),
        }, body

    path = f"{ns}/hooked"
    headers, body = delivery(SECRET)
    unsigned = {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}
    assert post(receiver, path, unsigned, body)[0] == 401
    assert post(receiver, path, *delivery("a-guessed-secret"))[0] == 401
    assert post(receiver, path, headers, body.replace(b"deleted", b"created"))[0] == 401
    assert post(receiver, path, *delivery(SECRET, age_s=900))[0] == 400
    assert post(receiver, path, headers, body)[0] == 200
    assert post(receiver, path, headers, body) == (
        400,
        {"error": "Replayed", "message": f"delivery {headers[DELIVERY_ID_HEADER]} was already received"},
    )
    assert post(receiver, f"{ns}/no-such-registry", *delivery(SECRET))[0] == 404
    after = receiver_counts(receiver)
    assert after["accepted"] == before["accepted"] + 1
    rejected = {k: after["rejected"].get(k, 0) - before["rejected"].get(k, 0) for k in after["rejected"]}
    assert rejected == {
        "Unsigned": 1,
        "BadSignature": 2,
        "StaleTimestamp": 1,
        "Replayed": 1,
        "UnknownRegistry": 1,
    }


def test_secret_rotation_and_registry_deletion(
    testbed: Testbed,
    hooked_mlflow: MlflowServer,
    hook_namespace: str,
    hook_operator: tuple[OperatorProcess, str],
) -> None:
    _, receiver = hook_operator
    ns, uri = hook_namespace, hooked_mlflow.uri
    apply_yaml(testbed, secret_yaml(ns, SECRET))
    apply_yaml(testbed, registry_yaml(ns, "hooked", uri, "60s", webhook=True))
    first = wait_for(lambda: our_webhooks(uri, ns), 30, "the webhook in MLflow")[0]
    prompt = f"rotated-{uuid.uuid4().hex[:8]}"
    register(uri, prompt, 2)
    apply_yaml(testbed, alias_yaml(ns, "rotated", "hooked", prompt, 1))
    wait_synced(testbed, ns, "rotated", uri, prompt, 1)

    # A new secret: the registration follows (same webhook, new fingerprint), deliveries still verify,
    # MLflow's test delivery with the new secret included (the receiver learns it before MLflow).
    before = receiver_counts(receiver)["rejected"].get("BadSignature", 0)
    apply_yaml(testbed, secret_yaml(ns, SECRET + "-rotated"))
    testbed.kubectl(
        "annotate", "promptregistry", "hooked", "-n", ns, f"rotated-at={time.time()}", "--overwrite"
    )

    def updated() -> dict[str, Any] | None:
        hooks = our_webhooks(uri, ns)
        return hooks[0] if hooks and hooks[0]["description"] != first["description"] else None

    second = wait_for(updated, 30, "the webhook to carry the new secret's fingerprint")
    assert second["webhook_id"] == first["webhook_id"]
    assert measure(uri, prompt, 1, 2, timeout=20) < 20.0
    assert receiver_counts(receiver)["rejected"].get("BadSignature", 0) == before

    # Deleting the registry removes its webhook from MLflow.
    testbed.kubectl("delete", "promptalias", "rotated", "-n", ns, "--wait=true", "--timeout=60s")
    testbed.kubectl("delete", "promptregistry", "hooked", "-n", ns, "--wait=true", "--timeout=60s")
    wait_for(lambda: not our_webhooks(uri, ns), 20, "the webhook to be removed from MLflow")
