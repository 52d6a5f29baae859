"""The registry's hot path is cheaper than MLflow's own client: one request instead of three.

Prints the medians (run with -s to see them); asserts only the ordering, which holds with a wide
margin, so the test is not sensitive to machine load.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import pytest

from promptalias.registry import MlflowRegistry, RegistryConfig, VersionCache
from promptalias.registry.testing import register_prompt_versions
from promptalias.testbed import Testbed

pytestmark = pytest.mark.integration

ROUNDS = 4
PER_ROUND = 40


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"median {statistics.median(ordered) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms (n={len(ordered)})"


def test_set_alias_is_faster_than_mlflow_set_prompt_alias(
    testbed: Testbed, prompt_name: str, mlflow_client: Any, record_property: Any
) -> None:
    import mlflow.genai

    register_prompt_versions(testbed.mlflow_uri, prompt_name, ["one", "two"])
    ours: list[float] = []
    theirs: list[float] = []
    ours_read: list[float] = []
    theirs_read: list[float] = []

    async def measure_ours(registry: MlflowRegistry, start: int) -> None:
        for i in range(start, start + PER_ROUND):
            t0 = time.perf_counter()
            await registry.set_alias(prompt_name, "production", 1 + i % 2)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await registry.get_version_by_alias(prompt_name, "production")
            ours_read.append(time.perf_counter() - t0)

    def measure_theirs(start: int) -> None:
        for i in range(start, start + PER_ROUND):
            t0 = time.perf_counter()
            mlflow.genai.set_prompt_alias(prompt_name, "production", 1 + i % 2)
            theirs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            mlflow_client.get_prompt_version_by_alias(prompt_name, "production")
            theirs_read.append(time.perf_counter() - t0)

    async def main() -> None:
        async with MlflowRegistry(RegistryConfig(testbed.mlflow_uri), cache=VersionCache()) as registry:
            await registry.set_alias(prompt_name, "production", 1)  # warm the connection
            mlflow.genai.set_prompt_alias(prompt_name, "production", 1)  # warm MLflow's session
            for r in range(ROUNDS):
                await measure_ours(registry, r * PER_ROUND)
                measure_theirs(r * PER_ROUND)  # blocks the loop on purpose: nothing else runs

    asyncio.run(main())
    report = {
        "registry.set_alias": summary(ours),
        "mlflow.genai.set_prompt_alias": summary(theirs),
        "registry.get_version_by_alias": summary(ours_read),
        "MlflowClient.get_prompt_version_by_alias": summary(theirs_read),
    }
    for name, text in report.items():
        print(f"{name:45s} {text}")
        record_property(name, text)
    assert statistics.median(ours) < statistics.median(theirs)
    assert statistics.median(ours_read) < statistics.median(theirs_read)
