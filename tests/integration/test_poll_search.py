"""Drift resyncs by searching the registry (reconcile/poll.py), as at thousands of prompts in use.

An operator of its own serves the test's namespace with PROMPTALIAS_POLL_SEARCH_PAGE_COST=1, so
even two prompts in use are read by one registered-models/search per resync: moves made in MLflow
are followed exactly as through one GET per prompt (the operator's poll counter of searches is the
positive marker that the search path ran).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from integration.test_follow_mode import Bed
from kit import OperatorProcess, metric_total, ready_registry, wait_for
from promptalias.testbed import Testbed

pytestmark = [pytest.mark.integration, pytest.mark.without_operator]


def test_moves_made_in_mlflow_are_followed_through_a_search(
    testbed: Testbed,
    crds: Path,
    k8s_api: Any,
    namespace: str,
    prompt_name: str,
    mlflow_client: Any,
    tmp_path: Path,
) -> None:
    operator = OperatorProcess(
        testbed,
        tmp_path / "operator.log",
        "--namespace",
        namespace,
        "--standalone",
        env={"PROMPTALIAS_POLL_SEARCH_PAGE_COST": "1"},
    )
    operator.start()
    try:
        ready_registry(testbed, namespace)
        bed = Bed(testbed, k8s_api, namespace, prompt_name)
        other = Bed(testbed, k8s_api, namespace, f"{prompt_name}-b")
        bed.register(2)
        other.register(2)
        bed.move(1)
        other.move(1)
        bed.create("prod")  # follow mode: the operator only reads and projects
        other.create("other")
        bed.wait_resolved("prod", 1)
        other.wait_resolved("other", 1)

        def searches() -> float:
            return metric_total(
                operator.metrics(), "promptalias_registry_searches_total", registry=f"{namespace}/mlflow"
            )

        wait_for(lambda: searches() >= 1, 30, "a drift poll by search")
        bed.move(2)
        bed.wait_resolved("prod", 2, timeout=30)
        assert bed.wait_projected("prod", 2)["version"] == 2
        assert bed.history("prod")[-1] == ("Observed", 1, 2, "mlflow")
        other.wait_resolved("other", 1)  # the other prompt's search result changed nothing
        assert searches() >= 2
    finally:
        operator.stop()
