"""Two "clusters" sharing one MLflow (issue 8): one owner per alias, readers always allowed, takeover.

Cluster A is the testbed with the session operator (cluster id: the uid of its kube-system
namespace). Cluster B is a second, real control plane started for this module, with its own
operator (`--cluster-id cluster-b --namespace <ns>`) against the same MLflow server. A second
apiserver, not a second namespace: the session operator watches every namespace of the testbed,
so an operator for "cluster B" there would share its objects with cluster A's operator.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integration.test_follow_mode import Bed
from kit import OperatorProcess, wait_for
from promptalias.testbed import Testbed

pytestmark = pytest.mark.integration

OWNER_TAG = "promptalias.io/owner.production"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class ClusterB:
    kubeconfig: Path
    namespace: str
    api: Any
    operator: OperatorProcess


def _kubectl(testbed: Testbed, kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [testbed.kubectl_path, f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.fixture(scope="module")
def cluster_b(
    testbed: Testbed, crds: Path, operator_process: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterB]:
    from kubernetes import client, config

    from promptalias.testbed.build import ensure_binaries
    from promptalias.testbed.controlplane import ControlPlane
    from promptalias.testbed.procs import RUN_PREFIX, RUN_ROOT, write_owner

    run_dir = RUN_ROOT / f"{RUN_PREFIX}{os.getpid()}-cluster-b-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    plane = ControlPlane(ensure_binaries(), run_dir / "k8s", tied=True)
    operator: OperatorProcess | None = None
    api = None
    try:
        plane.start()
        # Recorded like the testbed's own servers, so a crashed run is reaped by the next one.
        write_owner(run_dir, os.getpid(), [server.pid for server in plane.servers])
        namespace = "cluster-b-prompts"
        kubeconfig = plane.kubeconfig
        _kubectl(testbed, kubeconfig, "apply", "--server-side", "-f", str(crds))
        _kubectl(testbed, kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))
        _kubectl(testbed, kubeconfig, "create", "namespace", namespace)
        registry = f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptRegistry
metadata: {{name: mlflow, namespace: {namespace}}}
spec: {{trackingUri: "{testbed.mlflow_uri}", refreshInterval: 2s}}
"""
        _kubectl(testbed, kubeconfig, "apply", "-f", "-", stdin=registry)
        log = tmp_path_factory.mktemp("cluster-b") / "operator.log"
        operator = OperatorProcess(
            testbed,
            log,
            "--cluster-id",
            "cluster-b",
            "--namespace",
            namespace,
            env={"KUBECONFIG": str(kubeconfig)},
        )
        operator.start()
        api = config.new_client_from_config(config_file=str(kubeconfig))
        custom = client.CustomObjectsApi(api)

        def registry_ready() -> bool:
            reg = custom.get_namespaced_custom_object(
                "promptalias.io", "v1alpha1", namespace, "promptregistries", "mlflow"
            )
            return any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (reg.get("status") or {}).get("conditions", [])
            )

        wait_for(registry_ready, 30, "cluster B's PromptRegistry to become Ready")
        yield ClusterB(kubeconfig, namespace, api, operator)
    finally:
        if operator is not None:
            operator.stop()
        if api is not None:
            api.close()
        plane.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def two(
    testbed: Testbed,
    k8s_api: Any,
    namespace: str,
    registry: str,
    prompt_name: str,
    mlflow_client: Any,
    cluster_b: ClusterB,
) -> Iterator[tuple[Bed, Bed]]:
    """The same prompt seen from cluster A (a fresh namespace) and from cluster B."""
    a = Bed(testbed, k8s_api, namespace, prompt_name)
    b = Bed(testbed, cluster_b.api, cluster_b.namespace, prompt_name, kubeconfig=cluster_b.kubeconfig)
    a.register(3)
    try:
        yield a, b
    finally:  # cluster B's namespace lives as long as the module: clear it for the next test
        b.custom.delete_collection_namespaced_custom_object(
            "promptalias.io", "v1alpha1", b.namespace, "promptaliases"
        )


def _cluster_a_id(a: Bed) -> str:
    return str(a.core.read_namespace("kube-system").metadata.uid)


def _owner(bed: Bed) -> dict[str, str]:
    owner: dict[str, str] = json.loads(bed.tags()[OWNER_TAG])
    return owner


def _setup_a_owns_b_blocked(a: Bed, b: Bed, prod_b: str) -> str:
    """A pins production at 1 and owns it; B pins it at 2 and is refused. Returns A's owner id."""
    a.create("prod", version=1)
    a.wait_resolved("prod", 1)
    b.create(prod_b, version=2)
    b.wait_reason(prod_b, "OwnedElsewhere")
    return f"{_cluster_a_id(a)}/{a.namespace}/prod"


def test_first_owner_wins_the_other_cluster_never_writes_readers_follow(two: tuple[Bed, Bed]) -> None:
    a, b = two
    owner_a = _setup_a_owns_b_blocked(a, b, "prod-owned")
    assert _owner(a) == {"cluster": _cluster_a_id(a), "namespace": a.namespace, "name": "prod"}

    ready, _, message = b.ready("prod-owned")
    assert ready == "False"
    assert owner_a in message
    assert "promptalias takeover" in message
    status = b.status("prod-owned")
    assert status["owner"] == owner_a
    assert {c["type"]: c["status"] for c in status["conditions"]}["Stalled"] == "True"
    assert "resolvedVersion" not in status  # it never claimed anything
    assert ("Warning", "OwnedElsewhere") in {(t, r) for t, r, _ in b.events("prod-owned")}
    # B never writes: the alias and the owner tag hold still across several polls of both clusters.
    assert set(a.sample_aliases(3)) == {1}
    assert _owner(a)["cluster"] == _cluster_a_id(a)

    # A follow-mode reader in cluster B is always allowed, and follows A's moves.
    b.create("reader")
    b.wait_resolved("reader", 1)
    assert b.wait_projected("reader", 1)["template"] == "v1: parse {{invoice}}"
    a.patch("prod", {"spec": {"version": 3}})
    a.wait_resolved("prod", 3)
    b.wait_resolved("reader", 3)
    b.wait_projected("reader", 3)
    assert b.history("reader")[-1] == ("Observed", 1, 3, "mlflow")
    assert b.ready("prod-owned")[1] == "OwnedElsewhere"
    assert set(a.sample_aliases(2)) == {3}

    # The CLI, pointed at cluster B, shows who is blocked and why.
    listing = b.cli("get")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[1:]}
    assert rows["prod-owned"][3:7] == ["2", "<none>", "False", "OwnedElsewhere"]
    assert rows["reader"][3:7] == ["follow", "3", "True", "Synced"]


def test_takeover_moves_ownership_and_the_old_owner_stands_down(
    two: tuple[Bed, Bed], cluster_b: ClusterB, testbed: Testbed
) -> None:
    a, b = two
    _setup_a_owns_b_blocked(a, b, "prod-taker")

    _kubectl(
        testbed,
        cluster_b.kubeconfig,
        *("annotate", "promptalias", "prod-taker", "-n", b.namespace, "promptalias.io/takeover=true"),
    )
    b.wait_resolved("prod-taker", 2)
    assert a.aliases() == {"production": 2}
    assert _owner(a) == {"cluster": "cluster-b", "namespace": b.namespace, "name": "prod-taker"}
    # The old owner stands down and says who holds the alias now; nobody flaps.
    a.wait_reason("prod", "OwnedElsewhere")
    assert a.status("prod")["owner"] == f"cluster-b/{b.namespace}/prod-taker"
    assert set(a.sample_aliases(3)) == {2}
    assert b.history("prod-taker")[-1][:3] == ("Applied", 1, 2)


def test_takeover_via_cli_is_consumed_and_audited_and_can_go_back(two: tuple[Bed, Bed]) -> None:
    """The takeover request is one-shot (consumed), audited by a TookOver Event, and a later
    takeover back by cluster A sticks: a request left armed would re-take the alias whenever A
    takes it back, and the two clusters would flap it."""
    a, b = two
    owner_a = _setup_a_owns_b_blocked(a, b, "prod-cli")

    result = b.cli("takeover", "prod-cli", "--timeout", "8")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"requested takeover of {b.namespace}/prod-cli from {owner_a}" in result.stdout
    assert "promptalias.io/takeover" not in (b.get("prod-cli")["metadata"].get("annotations") or {})
    took = [m for t, r, m in b.events("prod-cli") if r == "TookOver"]
    assert took
    assert owner_a in took[0]

    # Cluster A takes it back: B must stand down, and the alias must stay at A's version.
    # The CLI decides from A's status: wait until A's operator has seen B's takeover (its
    # Ready says so), or the CLI rightly finds "nothing to take over" in the older status.
    a.wait_reason("prod", "OwnedElsewhere")
    back = a.cli("takeover", "prod", "--timeout", "8")
    assert back.returncode == 0, back.stdout + back.stderr
    assert "requested takeover" in back.stdout
    b.wait_reason("prod-cli", "OwnedElsewhere")
    assert set(a.sample_aliases(3)) == {1}
    assert _owner(a)["cluster"] == _cluster_a_id(a)


def test_cli_takeover_is_not_needed_when_nothing_blocks(two: tuple[Bed, Bed]) -> None:
    a, _ = two
    a.create("prod", version=1)
    a.wait_resolved("prod", 1)
    result = a.cli("takeover", "prod")
    assert result.returncode == 0
    assert "nothing to take over" in result.stdout
    assert "promptalias.io/takeover" not in (a.get("prod")["metadata"].get("annotations") or {})


def test_follow_mode_rollback_never_moves_an_alias_another_cluster_pins(two: tuple[Bed, Bed]) -> None:
    """Readers may follow an owned alias, but a rollback through one is a write, and writes to an
    alias another owner holds are refused (otherwise B would move A's alias and A's driftPolicy
    Enforce would move it back: one flap, two entries in two clusters' audit trails)."""
    a, b = two
    a.create("prod", version=1)
    a.wait_resolved("prod", 1)
    b.create("reader")
    b.wait_resolved("reader", 1)
    a.patch("prod", {"spec": {"version": 3}})
    b.wait_resolved("reader", 3)

    asked = b.cli("rollback", "reader", "--no-wait")  # asks for version 1 (the previous one)
    assert asked.returncode == 0, asked.stderr
    assert set(a.sample_aliases(3)) == {3}
    assert [h[0] for h in a.history("prod")].count("DriftCorrected") == 0
    assert "promptalias.io/rollback-to" not in (b.get("reader")["metadata"].get("annotations") or {})
