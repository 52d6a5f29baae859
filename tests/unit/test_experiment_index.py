"""The experiment index (reconcile/experiment_index.py): entries from bodies, who holds a split,
which events hand it over, which ask for a pass. (The split rule's full table is in
test_experiment_plan.py, through ExperimentState.holder.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promptalias.reconcile.experiment_index import (
    ExperimentEntry,
    experiment_entry,
    hands_over,
    split_holder,
    wants_experiment_pass,
)
from promptalias.vocabulary import PROMOTE_ANNOTATION

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RUNNING = ExperimentEntry("u1", "billing", "ab", "parser-production", T0, terminal=False, deleting=False)


def body(
    *, baseline: str | None = "parser-production", phase: str | None = None, **meta: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"candidate": {"alias": "experimental-parser", "version": 4}}
    if baseline is not None:
        spec["baseline"] = {"name": baseline}
    return {
        "metadata": {
            "uid": "u1",
            "namespace": "billing",
            "name": "ab",
            "creationTimestamp": "2026-12-01T09:00:00Z",
            **meta,
        },
        "spec": spec,
        "status": {"phase": phase} if phase is not None else {},
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (body(), RUNNING),
        (body(phase="Progressing"), RUNNING),
        (body(phase="Paused"), RUNNING),
        (body(phase="Promoted"), replace(RUNNING, terminal=True)),
        (body(phase="Aborted"), replace(RUNNING, terminal=True)),
        (body(deletionTimestamp="2026-12-01T10:00:00Z"), replace(RUNNING, deleting=True)),
        (body(baseline=None), None),
        (body(baseline=""), None),
    ],
    ids=str,
)
def test_experiment_entry(given: dict[str, Any], expected: ExperimentEntry | None) -> None:
    assert experiment_entry(given) == expected


def test_split_holder_is_the_oldest_running_experiment_of_that_baseline() -> None:
    older = replace(RUNNING, uid="u0", name="older", created=T0 - timedelta(hours=1))
    assert split_holder([RUNNING, older], "billing", "parser-production") == "u0"
    assert split_holder([RUNNING, replace(older, terminal=True)], "billing", "parser-production") == "u1"
    assert split_holder([RUNNING], "billing", "another-baseline") is None
    assert split_holder([], "billing", "parser-production") is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (None, True),  # gone
        (RUNNING, False),
        (replace(RUNNING, terminal=True), True),
        (replace(RUNNING, deleting=True), True),
        (replace(RUNNING, name="renamed"), False),
    ],
    ids=str,
)
def test_hands_over_when_its_claim_ends(now: ExperimentEntry | None, expected: bool) -> None:
    assert hands_over(RUNNING, now) is expected


@pytest.mark.parametrize(
    ("generation", "observed", "annotations", "expected"),
    [
        (2, 2, {}, False),
        (3, 2, {}, True),
        (1, None, {}, True),
        (2, 2, {PROMOTE_ANNOTATION: "now"}, True),
        (2, 2, {"example.com/note": "x"}, False),
    ],
)
def test_wants_experiment_pass(
    generation: int, observed: int | None, annotations: dict[str, str], expected: bool
) -> None:
    status = {} if observed is None else {"observedGeneration": observed}
    given = {"metadata": {"generation": generation, "annotations": annotations}, "status": status}
    assert wants_experiment_pass(given) is expected
