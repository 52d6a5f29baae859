"""What a user asks of a PromptAlias (reconcile/alias_requests.py): a new generation, a request annotation."""

from __future__ import annotations

from typing import Any

import pytest

from promptalias.reconcile.alias_requests import request_of, rollback_request, takeover_requested, wants_pass
from promptalias.vocabulary import GITOPS_OVERRIDE_ANNOTATION, ROLLBACK_ANNOTATION, TAKEOVER_ANNOTATION


def meta(**annotations: str) -> dict[str, Any]:
    return {"annotations": annotations}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("3", 3),
        ("3@2026-12-01T09:00:00Z", 3),  # the CLI stamps its requests: same version, a new request
        ("0", None),
        ("-2", None),
        ("three", None),
        ("", None),
    ],
)
def test_rollback_request(value: str | None, expected: int | None) -> None:
    given = meta() if value is None else meta(**{ROLLBACK_ANNOTATION: value})
    assert rollback_request(given) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(None, False), ("true", True), ("yes", False), ("True", False)]
)
def test_takeover_is_asked_only_with_exactly_true(value: str | None, expected: bool) -> None:
    given = meta() if value is None else meta(**{TAKEOVER_ANNOTATION: value})
    assert takeover_requested(given) is expected


def test_no_annotations_at_all_ask_nothing() -> None:
    assert rollback_request({"annotations": None}) is None
    assert takeover_requested({}) is False


def body(generation: int, observed: int | None, **annotations: str) -> dict[str, Any]:
    status = {} if observed is None else {"observedGeneration": observed}
    return {"metadata": {"generation": generation, "annotations": annotations}, "status": status}


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("in sync", body(2, 2), False),
        ("a new generation", body(3, 2), True),
        ("never reconciled", body(1, None), True),
        ("a rollback request", body(2, 2, **{ROLLBACK_ANNOTATION: "1"}), True),
        ("a takeover request", body(2, 2, **{TAKEOVER_ANNOTATION: "true"}), True),
        ("another annotation is no request", body(2, 2, **{GITOPS_OVERRIDE_ANNOTATION: "false"}), False),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_wants_pass(name: str, given: dict[str, Any], expected: bool) -> None:
    assert wants_pass(given) is expected


def test_request_of_changes_with_the_user_s_asks_only() -> None:
    base = body(2, 2, **{GITOPS_OVERRIDE_ANNOTATION: "false"})
    assert request_of(base) == (2, {})
    # our own status write (observedGeneration) and unrelated annotations are no new request
    assert request_of(base) == request_of(body(2, 1))
    asked = body(2, 2, **{ROLLBACK_ANNOTATION: "1@x"})
    assert request_of(asked) == (2, {ROLLBACK_ANNOTATION: "1@x"})
    assert request_of(asked) != request_of(body(2, 2, **{ROLLBACK_ANNOTATION: "1@y"}))
    assert request_of(body(3, 2)) != request_of(base)
    assert request_of({}) == (None, {})
