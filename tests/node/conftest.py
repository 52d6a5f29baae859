"""Fixtures for tests that run the product as pods on the testbed's real node.

One testbed with a node per session (kubelet, containerd, kube-scheduler, kube-proxy; images built
with buildah and imported into containerd under the chart's default name). Only one node fits on a
machine, so a second session waits for the first. PROMPTALIAS_NODE=0 skips these tests (e.g. on a
machine where you are not root); anywhere else a node that cannot start is a failure, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from promptalias.testbed import Testbed
from promptalias.testbed.tools import Helm, helm


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/node/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.node)
            if os.environ.get("PROMPTALIAS_NODE", "1") == "0":
                item.add_marker(pytest.mark.skip(reason="PROMPTALIAS_NODE=0: no node on this machine"))
            elif os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="a node needs root (containerd, kubelet, iptables)"))


@pytest.fixture(scope="session")
def node_bed() -> Iterator[Testbed]:
    bed = Testbed.start(node=True, node_wait_s=1800)
    try:
        yield bed
    finally:
        bed.stop()


@pytest.fixture(scope="session")
def node_helm(node_bed: Testbed) -> Helm:
    return helm(node_bed.kubeconfig)


@pytest.fixture(scope="session")
def node_mlflow(node_bed: Testbed) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=node_bed.mlflow_uri, registry_uri=node_bed.mlflow_uri)
