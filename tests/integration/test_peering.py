"""Two operator replicas with kopf peering: exactly one is active; a standby takes over."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kit import OperatorProcess, apply_yaml, get_object, wait_for
from promptalias.testbed import Testbed

pytestmark = pytest.mark.integration


def test_one_active_replica_and_takeover(
    testbed: Testbed, crds: Path, namespace: str, tmp_path: Path
) -> None:
    # Namespace-scoped operators peer through a KopfPeering in their namespace.
    apply_yaml(
        testbed,
        f"apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {{name: pa, namespace: {namespace}}}\n",
    )
    common = (
        "--namespace",
        namespace,
        "--peering",
        "pa",
        "--peering-lifetime",
        "4",
        "--cluster-id",
        "peered",
    )
    high = OperatorProcess(testbed, tmp_path / "high.log", *common, "--priority", "200")
    low = OperatorProcess(testbed, tmp_path / "low.log", *common, "--priority", "100")
    high.start()
    low.start()
    try:
        # kopf starts every replica paused and resumes the one with the highest priority.
        wait_for(lambda: "Resuming operations" in high.log_path.read_text(), 30, "the high replica to resume")
        time.sleep(2)  # a few keep-alive rounds: the low replica must stay paused
        assert "Resuming operations" not in low.log_path.read_text()
        peers = get_object(testbed, "kopfpeering", namespace, "pa").get("status") or {}
        assert sorted(p["priority"] for p in peers.values()) == [100, 200], json.dumps(peers)

        high.kill()
        wait_for(lambda: "Resuming operations" in low.log_path.read_text(), 40, "the standby to resume")
    finally:
        high.stop()
        low.stop()
