"""The one deletion rule both finalizers follow (reconcile/deletion.py): every branch, no cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from promptalias.api.conditions import ConditionStatus, ConditionType, Reason, make_condition
from promptalias.reconcile.backoff import MAX_BACKOFF_S, backoff
from promptalias.reconcile.deletion import (
    RETRY_CAP_S,
    DeletionPlan,
    GiveUp,
    Retry,
    abandoned,
    after_failure,
    deleting_conditions,
    plan_deletion,
    since_deletion,
)
from promptalias.reconcile.ownership import Owner
from promptalias.vocabulary import ABANDON_ANNOTATION

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ME = Owner("c1", "billing", "parser")
OTHER = Owner("c2", "billing", "parser")

# (name, wanted, our version, current in MLflow, owner mark, expected (delete, release, kept))
CASES = [
    ("ours, unmarked, at our version: deleted", True, 3, 3, None, (True, False, False)),
    ("ours, marked by us, at our version: deleted, tag released", True, 3, 3, ME, (True, True, False)),
    ("moved by someone since: kept, tag released", True, 3, 4, ME, (False, True, True)),
    ("already gone: nothing to delete, tag released", True, 3, None, ME, (False, True, True)),
    ("marked by another owner: untouched", True, 3, 3, OTHER, (False, False, False)),
    ("we never set it (no version): kept", True, None, None, None, (False, False, True)),
    ("policy Retain: kept silently, our tag released", False, 3, 3, ME, (False, True, False)),
    ("policy Retain, unmarked: nothing at all", False, 3, 3, None, (False, False, False)),
    ("policy Retain, another owner: nothing at all", False, 3, 3, OTHER, (False, False, False)),
]


@pytest.mark.parametrize(
    ("wanted", "version", "current", "mark", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_plan_deletion(
    wanted: bool,
    version: int | None,
    current: int | None,
    mark: Owner | None,
    expected: tuple[bool, bool, bool],
) -> None:
    plan = plan_deletion(wanted=wanted, version=version, current=current, mark=mark, me=ME)
    assert plan == DeletionPlan(*expected)


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        (None, False),
        ({}, False),
        ({ABANDON_ANNOTATION: "true"}, True),
        ({ABANDON_ANNOTATION: "false"}, False),
        ({ABANDON_ANNOTATION: "yes"}, False),
    ],
)
def test_abandon_annotation_skips_mlflow(annotations: dict[str, str] | None, expected: bool) -> None:
    assert abandoned(annotations) is expected


# (name, transient, seconds since deletion, retry, expected)
FAILURES = [
    ("MLflow down, young: retry at once", True, 5.0, 0, Retry(1.0)),
    ("MLflow down: the delay doubles", True, 5.0, 3, Retry(8.0)),
    ("MLflow down: the delay stops at the cap", True, 5.0, 9, Retry(RETRY_CAP_S)),
    ("MLflow down past the timeout: give up", True, 120.0, 2, GiveUp(120.0)),
    ("not transient (credentials, protocol): give up at once", False, 5.0, 0, GiveUp(5.0)),
]


@pytest.mark.parametrize(
    ("transient", "elapsed", "retry", "expected"),
    [case[1:] for case in FAILURES],
    ids=[case[0] for case in FAILURES],
)
def test_after_failure(transient: bool, elapsed: float, retry: int, expected: Retry | GiveUp) -> None:
    assert after_failure(transient=transient, elapsed=elapsed, timeout_s=120.0, retry=retry) == expected


def test_since_deletion() -> None:
    assert since_deletion("2026-11-25T11:58:00Z", NOW) == 120.0
    assert since_deletion(NOW - timedelta(seconds=3), NOW) == 3.0
    assert since_deletion(None, NOW) == 0.0
    assert since_deletion("not a time", NOW) == 0.0


def test_the_deleting_condition_goes_through_the_condition_builder() -> None:
    before = [
        make_condition(ConditionType.READY, False, Reason.CONFLICT, "held", now=NOW, generation=1),
        make_condition(ConditionType.STALLED, True, Reason.CONFLICT, "held", now=NOW, generation=1),
        make_condition(ConditionType.DRIFTED, True, Reason.DRIFT_DETECTED, "moved", now=NOW, generation=1),
    ]
    later = NOW + timedelta(minutes=1)
    after = {c.type: c for c in deleting_conditions(before, "MLflow down", retry=2, generation=2, now=later)}
    assert set(after) == {ConditionType.READY, ConditionType.DRIFTED, ConditionType.RECONCILING}
    ready = after[ConditionType.READY]
    assert (ready.status, ready.reason, ready.observed_generation) == (ConditionStatus.FALSE, "Deleting", 2)
    assert (
        ready.message
        == f"deleting: MLflow down (attempt 3); to skip MLflow: annotate {ABANDON_ANNOTATION}=true"
    )
    assert ready.last_transition_time == NOW  # it was False before: no transition
    assert after[ConditionType.RECONCILING].reason == "Deleting"
    assert after[ConditionType.DRIFTED] == before[2]  # kept as it was


@pytest.mark.parametrize(
    ("failures", "base", "cap", "expected"),
    [
        (0, 1.0, MAX_BACKOFF_S, 1.0),
        (1, 1.0, MAX_BACKOFF_S, 2.0),
        (5, 1.0, MAX_BACKOFF_S, 32.0),
        (6, 1.0, MAX_BACKOFF_S, MAX_BACKOFF_S),
        (50, 1.0, MAX_BACKOFF_S, MAX_BACKOFF_S),
        (-1, 1.0, MAX_BACKOFF_S, 1.0),
        (1, 5.0, 300.0, 10.0),  # the webhook registration daemon
        (6, 5.0, 300.0, 300.0),
        (9, 5.0, 300.0, 300.0),
    ],
)
def test_one_backoff_for_every_retry_loop(failures: int, base: float, cap: float, expected: float) -> None:
    assert backoff(failures, base=base, cap=cap) == expected
