"""Two operator replicas with kopf peering: exactly one is active; a standby takes over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit import OperatorProcess, apply_yaml, get_object, wait_for
from promptalias.testbed import Testbed

pytestmark = pytest.mark.integration


class KeepAlives:
    """Counts each peer's keep-alive rounds: kopf rewrites the peer's `lastseen` every round (about
    every second with a 4 s lifetime); polled faster than that, every new stamp is one round."""

    def __init__(self, testbed: Testbed, namespace: str) -> None:
        self.testbed = testbed
        self.namespace = namespace
        self.start = self._stamps()
        self.seen: dict[str, set[str]] = {peer: set() for peer in self.start}

    def _stamps(self) -> dict[str, str]:
        peers = get_object(self.testbed, "kopfpeering", self.namespace, "pa").get("status") or {}
        return {peer: str(info.get("lastseen")) for peer, info in peers.items() if isinstance(info, dict)}

    def fewest(self) -> int:
        """The fewest rounds any of the peers present at the start has made since."""
        for peer, stamp in self._stamps().items():
            if peer in self.seen and stamp != self.start[peer]:
                self.seen[peer].add(stamp)
        return min((len(stamps) for stamps in self.seen.values()), default=0) if len(self.seen) >= 2 else 0


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
        # Two keep-alive rounds of both replicas (each rewrites its lastseen): the low one stays paused.
        rounds = KeepAlives(testbed, namespace)
        wait_for(lambda: rounds.fewest() >= 2, 40, "two keep-alive rounds of both replicas", interval=0.2)
        assert "Resuming operations" not in low.log_path.read_text()
        peers = get_object(testbed, "kopfpeering", namespace, "pa").get("status") or {}
        assert sorted(p["priority"] for p in peers.values()) == [100, 200], json.dumps(peers)

        high.kill()
        wait_for(lambda: "Resuming operations" in low.log_path.read_text(), 40, "the standby to resume")
    finally:
        high.stop()
        low.stop()
