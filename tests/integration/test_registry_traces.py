"""registry/traces.py against the real MLflow server: traces linked to prompt versions by MLflow's own
tracing API (mlflow.genai.load_prompt inside @mlflow.trace) and feedback from mlflow.log_feedback."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promptalias.registry import MlflowRegistry, RegistryConfig, RegistryNotFound
from promptalias.registry.traces import experiment_id, feedback_value, version_feedback
from promptalias.testbed import Testbed

pytestmark = pytest.mark.integration


def _log_traffic(prompt: str, experiment: str) -> None:
    import mlflow
    import mlflow.genai
    from mlflow.entities import AssessmentSource

    mlflow.set_experiment(experiment)
    for n in (1, 2):
        mlflow.genai.register_prompt(name=prompt, template=f"v{n}: parse {{{{text}}}}")

    @mlflow.trace  # type: ignore[untyped-decorator]
    def handle(version: int, text: str) -> str:
        loaded = mlflow.genai.load_prompt(f"prompts:/{prompt}/{version}")
        return str(loaded.format(text=text))

    # version 1: 4 traces, thumbs up on 1 of 3 rated; version 2: 3 traces, 2 of 2 up; plus ratings
    plan = [
        (1, True, 4.0),
        (1, False, 2.0),
        (1, False, None),
        (1, None, None),
        (2, True, 5.0),
        (2, True, 4.0),
        (2, None, 3.0),
    ]
    for version, thumbs, rating in plan:
        handle(version, "invoice 42")
        mlflow.flush_trace_async_logging()
        trace_id = mlflow.get_last_active_trace_id()
        assert trace_id is not None
        if thumbs is not None:
            mlflow.log_feedback(
                trace_id=trace_id,
                name="thumbs",
                value=thumbs,
                source=AssessmentSource(source_type="HUMAN", source_id="user-1"),
            )
        if rating is not None:
            mlflow.log_feedback(trace_id=trace_id, name="rating", value=rating)


def test_feedback_per_prompt_version(testbed: Testbed, mlflow_client: Any) -> None:
    prompt = f"traces-{uuid.uuid4().hex[:8]}"
    experiment = f"traffic-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC) - timedelta(seconds=5)
    _log_traffic(prompt, experiment)

    async def read() -> tuple[Any, ...]:
        async with MlflowRegistry(RegistryConfig(testbed.mlflow_uri)) as registry:
            exp_id = await experiment_id(registry, experiment)
            thumbs_1 = await version_feedback(
                registry, experiment=exp_id, prompt=prompt, version=1, name="thumbs", rate=True, since=since
            )
            thumbs_2 = await version_feedback(
                registry, experiment=exp_id, prompt=prompt, version=2, name="thumbs", rate=True, since=since
            )
            rating_2 = await version_feedback(
                registry, experiment=exp_id, prompt=prompt, version=2, name="rating", rate=False, since=since
            )
            later = await version_feedback(
                registry,
                experiment=exp_id,
                prompt=prompt,
                version=1,
                name="thumbs",
                rate=True,
                since=datetime.now(UTC) + timedelta(minutes=1),
            )
            small_pages = await version_feedback(
                registry,
                experiment=exp_id,
                prompt=prompt,
                version=1,
                name="rating",
                rate=False,
                since=since,
                max_traces=1,
            )
            return thumbs_1, thumbs_2, rating_2, later, small_pages

    thumbs_1, thumbs_2, rating_2, later, small_pages = asyncio.run(read())
    assert (thumbs_1.traces, sorted(thumbs_1.values)) == (4, [0.0, 0.0, 1.0])
    assert (thumbs_2.traces, thumbs_2.values) == (3, [1.0, 1.0])
    assert sorted(rating_2.values) == [3.0, 4.0, 5.0]
    assert (later.traces, later.values) == (0, [])
    assert small_pages.traces == 4  # one page of up to 500 holds all; max_traces only stops paging
    assert not small_pages.truncated


def test_unknown_experiment_says_what_to_set(testbed: Testbed) -> None:
    async def read() -> None:
        async with MlflowRegistry(RegistryConfig(testbed.mlflow_uri)) as registry:
            await experiment_id(registry, f"missing-{uuid.uuid4().hex[:8]}")

    with pytest.raises(RegistryNotFound, match=r"mlflowFeedback\.experiment"):
        asyncio.run(read())


@pytest.mark.parametrize(
    ("raw", "rate", "expected"),
    [
        (True, True, 1.0),
        (False, False, 0.0),
        (4, False, 4.0),
        (0, True, 0.0),
        ("yes", True, 1.0),
        ("meh", True, 0.0),
        ("meh", False, None),
        ("3.5", False, 3.5),
        (None, False, None),
    ],
)
def test_feedback_values(raw: Any, rate: bool, expected: float | None) -> None:
    assert feedback_value(raw, rate=rate) == expected
