"""Session fixtures: one real control plane + one real MLflow per test session.

Unit tests never touch these, so `pytest tests/unit` needs no testbed. Every test that does gets
its own namespace and its own prompt names, so tests never see each other's state.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The MLflow client retries for minutes by default; tests that stop the server must fail fast.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from kit import OperatorProcess, ready_registry
from promptalias.testbed import MlflowServer, Testbed

OPERATOR_OPT_OUT = "promptalias.io/test-operator"


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    bed = Testbed.start()
    try:
        yield bed
    finally:
        bed.stop()


@pytest.fixture(scope="session")
def k8s_api(testbed: Testbed) -> Iterator[Any]:
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(testbed.kubeconfig))
    try:
        yield client
    finally:
        client.close()


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")


@pytest.fixture
def namespace(request: pytest.FixtureRequest, k8s_api: Any) -> Iterator[str]:
    """A fresh namespace for one test; deleted (asynchronously) afterwards.

    Tests marked `without_operator` get a namespace the session operator does not serve (its
    --namespace-selector excludes the label), so they can write status by hand undisturbed.
    """
    from kubernetes import client

    name = f"t-{_slug(request.node.name, 40)}-{uuid.uuid4().hex[:5]}"
    labels = {OPERATOR_OPT_OUT: "off"} if request.node.get_closest_marker("without_operator") else None
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture
def prompt_name(request: pytest.FixtureRequest) -> str:
    """A fresh MLflow prompt name for one test."""
    return f"{_slug(request.node.name, 30)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def mlflow_client(testbed: Testbed) -> Any:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(testbed.mlflow_uri)
    mlflow.set_registry_uri(testbed.mlflow_uri)
    return MlflowClient(tracking_uri=testbed.mlflow_uri, registry_uri=testbed.mlflow_uri)


@pytest.fixture(scope="session")
def basic_auth_mlflow(testbed: Testbed) -> Iterator[MlflowServer]:
    """A second MLflow server with `--app-name basic-auth`; admin user `admin`, `.admin_password`.

    Stopped after the test: each MLflow server is ~10 processes and ~300 MB, and a session that
    kept one per test would starve the servers started after it."""
    server = testbed.start_extra_mlflow(basic_auth=True)
    try:
        yield server
    finally:
        testbed.stop_extra_mlflow(server)


# ---- the operator as a real process ---------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def crds(testbed: Testbed) -> Path:
    """The CRDs from crds/ installed (server-side apply) and Established."""
    crd_dir = REPO / "crds"
    testbed.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=promptalias-tests", "-f", str(crd_dir)
    )
    testbed.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crd_dir))
    return crd_dir


@pytest.fixture(scope="session")
def operator_process(
    testbed: Testbed, crds: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """`promptalias operator` running out of cluster against the testbed (one per session)."""
    proc = OperatorProcess(
        testbed,
        tmp_path_factory.mktemp("operator") / "operator.log",
        f"--namespace-selector={OPERATOR_OPT_OUT}!=off",
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def registry(testbed: Testbed, namespace: str, operator_process: OperatorProcess) -> str:
    """A PromptRegistry named `mlflow` in the test namespace (refreshInterval 2s), Ready."""
    return ready_registry(testbed, namespace)
