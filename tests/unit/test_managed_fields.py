"""One managed-fields actor scan (reconcile/managed_fields.py) for spec.version and annotations."""

from __future__ import annotations

from typing import Any

from promptalias.reconcile.managed_fields import annotation_actor, last_manager, owners_of, version_actor

FIELDS: list[dict[str, Any]] = [
    {
        "manager": "kubectl-client-side-apply",
        "time": "2026-11-25T10:00:00Z",
        "fieldsV1": {"f:spec": {"f:version": {}, "f:prompt": {}}},
    },
    {"manager": "promptalias-operator", "time": "2026-11-25T11:00:00Z", "fieldsV1": {"f:status": {}}},
    {
        "manager": "argocd-controller",
        "time": "2026-11-25T12:00:00Z",
        "fieldsV1": {"f:spec": {"f:version": {}}},
    },
    {
        "manager": "kubectl-promptalias",
        "time": "2026-11-25T13:00:00Z",
        "fieldsV1": {"f:metadata": {"f:annotations": {"f:promptalias.io/takeover": {}}}},
    },
    {"time": "2026-11-25T14:00:00Z", "fieldsV1": {"f:metadata": {"f:annotations": {"f:x": {}}}}},
]


def test_the_newest_manager_of_spec_version() -> None:
    assert version_actor(FIELDS) == "argocd-controller"
    assert version_actor(FIELDS[1:2]) is None
    assert version_actor(None) is None


def test_the_manager_of_an_annotation() -> None:
    assert annotation_actor(FIELDS, "promptalias.io/takeover") == "kubectl-promptalias"
    assert annotation_actor(FIELDS, "promptalias.io/rollback-to") is None
    assert annotation_actor(FIELDS, "x") == "unknown"  # an entry without a manager name


def test_any_path_and_malformed_entries() -> None:
    assert last_manager(FIELDS, "spec", "prompt") == "kubectl-client-side-apply"
    assert last_manager(FIELDS, "spec") == "argocd-controller"
    assert last_manager([{"manager": "m", "fieldsV1": "not a map"}], "spec") is None
    assert last_manager([{"manager": "m"}], "spec") is None


def test_the_owners_of_a_field_give_the_same_answer_and_nothing_else() -> None:
    owners = owners_of(FIELDS, "spec", "version")
    assert owners == [
        {
            "manager": "kubectl-client-side-apply",
            "time": "2026-11-25T10:00:00Z",
            "fieldsV1": {"f:spec": {"f:version": {}}},
        },
        {
            "manager": "argocd-controller",
            "time": "2026-11-25T12:00:00Z",
            "fieldsV1": {"f:spec": {"f:version": {}}},
        },
    ]
    assert version_actor(owners) == version_actor(FIELDS)
    assert last_manager(owners, "spec", "prompt") is None  # only the field asked for is kept
    assert owners_of(FIELDS[1:2], "spec", "version") == []
    assert owners_of(None, "spec", "version") == []
    unnamed = owners_of([{"time": "t", "fieldsV1": {"f:spec": {"f:version": {}}}}], "spec", "version")
    assert version_actor(unnamed) == "unknown"
