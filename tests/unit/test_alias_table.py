"""The PromptAlias table (reconcile/alias_table.py): indexes stay consistent, every filter filters."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promptalias.api.promptalias import RegistryKind
from promptalias.reconcile.alias_requests import request_of, rollback_request, wants_pass
from promptalias.reconcile.alias_table import (
    LAST_APPLIED,
    AliasEntry,
    AliasTable,
    alias_entry,
    resource_version,
    slim_body,
)
from promptalias.reconcile.managed_fields import version_actor
from promptalias.reconcile.registry import RegistryKey

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
OWN = RegistryKey(RegistryKind.PROMPT_REGISTRY, "billing", "mlflow")
SHARED = RegistryKey(RegistryKind.CLUSTER_PROMPT_REGISTRY, None, "shared")
ELSEWHERE = RegistryKey(RegistryKind.PROMPT_REGISTRY, "billing", "staging")
# OWN and SHARED are two registry objects for one MLflow: their aliases contend.
ENDPOINTS = {OWN: "http://mlflow:5000", SHARED: "http://mlflow:5000", ELSEWHERE: "http://staging:5000"}


def entry(uid: str, **changes: Any) -> AliasEntry:
    base = AliasEntry(
        uid=uid,
        namespace="billing",
        name=uid,
        registry=OWN,
        prompt="invoice-parser",
        alias="production",
        created=T0,
        writes=True,
        deleting=False,
    )
    return replace(base, **changes)


def table(*entries: AliasEntry) -> AliasTable:
    t = AliasTable(ENDPOINTS.__getitem__)
    for e in entries:
        t.track(e)
    return t


def consistent(t: AliasTable) -> None:
    """Every index answers exactly what a scan of the entries would."""
    prompts = {e.prompt for e in t.entries.values()} | {"never-tracked"}
    for prompt in prompts:
        assert {e.uid for e in t.of_prompt(prompt)} == {u for u, e in t.entries.items() if e.prompt == prompt}
    for e in t.entries.values():
        assert t.uid_of(e.namespace, e.name) == e.uid


# ---- track / untrack ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    steps: tuple[Callable[[AliasTable], None], ...]
    by_prompt: dict[str, set[str]]
    by_name: dict[tuple[str, str], str | None]


def track(e: AliasEntry) -> Callable[[AliasTable], None]:
    return lambda t: t.track(e)


def untrack(uid: str) -> Callable[[AliasTable], None]:
    return lambda t: t.untrack(uid)


STEPS = [
    Step(
        "one entry is found by prompt and by name",
        (track(entry("a")),),
        {"invoice-parser": {"a"}},
        {("billing", "a"): "a"},
    ),
    Step(
        "re-tracked with a new prompt: gone from the old prompt's index",
        (track(entry("a")), track(entry("a", prompt="summarizer"))),
        {"invoice-parser": set(), "summarizer": {"a"}},
        {("billing", "a"): "a"},
    ),
    Step(
        "re-tracked with a new name: the old name is free",
        (track(entry("a")), track(entry("a", name="renamed"))),
        {"invoice-parser": {"a"}},
        {("billing", "a"): None, ("billing", "renamed"): "a"},
    ),
    Step(
        "untracked: in no index",
        (track(entry("a")), track(entry("b")), untrack("a")),
        {"invoice-parser": {"b"}},
        {("billing", "a"): None, ("billing", "b"): "b"},
    ),
    Step(
        "untracking an unknown uid changes nothing",
        (track(entry("a")), untrack("nobody")),
        {"invoice-parser": {"a"}},
        {("billing", "a"): "a"},
    ),
    Step(
        "recreated under its name before the old one is untracked: the name stays with the new uid",
        (track(entry("old", name="parser")), track(entry("new", name="parser")), untrack("old")),
        {"invoice-parser": {"new"}},
        {("billing", "parser"): "new"},
    ),
]


@pytest.mark.parametrize("case", STEPS, ids=lambda c: c.name)
def test_indexes_follow_track_and_untrack(case: Step) -> None:
    t = table()
    for step in case.steps:
        step(t)
    consistent(t)
    for prompt, uids in case.by_prompt.items():
        assert {e.uid for e in t.of_prompt(prompt)} == uids
        assert set(t.uids_where(prompt=prompt)) == uids
    for (namespace, name), uid in case.by_name.items():
        assert t.uid_of(namespace, name) == uid


def test_entries_is_what_was_tracked_last() -> None:
    t = table(entry("a"), entry("b"), entry("a", alias="staging"))
    assert sorted(t.entries) == ["a", "b"]
    assert t.entries["a"].alias == "staging"


# ---- queries -----------------------------------------------------------------------------------

POPULATION = (
    entry("own", created=T0),
    entry("shared", namespace="sandbox", registry=SHARED, created=T0 + timedelta(minutes=1)),
    entry("follower", writes=False),
    entry("leaving", deleting=True),
    entry("staging-alias", alias="staging"),
    entry("other-prompt", prompt="summarizer"),
    entry("other-mlflow", registry=ELSEWHERE),
)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, {e.uid for e in POPULATION}),
        ({"registry": SHARED}, {"shared"}),
        ({"endpoint": "http://staging:5000"}, {"other-mlflow"}),
        ({"endpoint": "http://mlflow:5000", "prompt": "summarizer"}, {"other-prompt"}),
        (
            {"endpoint": "http://mlflow:5000", "prompt": "invoice-parser", "alias": "production"},
            {"own", "shared", "follower", "leaving"},
        ),
        ({"alias": "staging"}, {"staging-alias"}),
        ({"namespace": "sandbox"}, {"shared"}),
        ({"prompt": "nobody-uses-it"}, set()),
        ({"registry": OWN, "namespace": "sandbox"}, set()),
    ],
    # sorted sets: every xdist worker must collect the same test ids
    ids=lambda value: str(sorted(value)) if isinstance(value, set) else str(value),
)
def test_uids_where_matches_every_filter_given(filters: dict[str, Any], expected: set[str]) -> None:
    assert set(table(*POPULATION).uids_where(**filters)) == expected


def test_claims_are_on_one_alias_of_one_prompt_and_deleting_or_following_ones_do_not_write() -> None:
    claims = {c.uid: c for c in table(*POPULATION).claims(prompt="invoice-parser", alias="production")}
    assert set(claims) == {"own", "shared", "follower", "leaving", "other-mlflow"}
    assert {uid for uid, c in claims.items() if c.writes} == {"own", "shared", "other-mlflow"}
    assert claims["shared"].endpoint == claims["own"].endpoint == "http://mlflow:5000"
    assert claims["other-mlflow"].endpoint == "http://staging:5000"
    assert (claims["shared"].namespace, claims["shared"].created) == ("sandbox", T0 + timedelta(minutes=1))


# ---- bodies ------------------------------------------------------------------------------------


def body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "promptalias.io/v1alpha1",
        "kind": "PromptAlias",
        "metadata": {
            "uid": "u1",
            "namespace": "billing",
            "name": "parser",
            "creationTimestamp": "2026-12-01T09:00:00Z",
        },
        "spec": {
            "registryRef": {"name": "mlflow"},
            "prompt": "invoice-parser",
            "alias": "production",
            **spec,
        },
    }


def test_alias_entry_of_a_body() -> None:
    assert alias_entry(body(version=3)) == entry("u1", name="parser")
    assert alias_entry(body()) == entry("u1", name="parser", writes=False)
    shared = body(registryRef={"kind": "ClusterPromptRegistry", "name": "shared"})
    assert alias_entry(shared) == entry("u1", name="parser", writes=False, registry=SHARED)
    leaving = body()
    leaving["metadata"]["deletionTimestamp"] = "2026-12-01T10:00:00Z"
    assert alias_entry(leaving) == entry("u1", name="parser", writes=False, deleting=True)


def test_a_body_whose_spec_does_not_parse_has_no_entry() -> None:
    assert alias_entry(body(registryRef={"kind": "Nonsense", "name": "x"})) is None


@pytest.mark.parametrize(
    ("meta", "expected"),
    [({"resourceVersion": "42"}, 42), ({}, -1), ({"resourceVersion": "not-a-number"}, -1)],
)
def test_resource_version(meta: dict[str, Any], expected: int) -> None:
    assert resource_version(meta) == expected


def _condition_fields(kind: str) -> dict[str, Any]:
    keys = ("lastTransitionTime", "message", "observedGeneration", "reason", "status", "type")
    return {f'k:{{"type":"{kind}"}}': {".": {}, **{f"f:{key}": {} for key in keys}}}


def test_the_slimmed_body_reads_the_same_and_is_a_fraction_of_the_size() -> None:
    import json

    status_fields = {
        "f:conditions": {".": {}, **_condition_fields("Ready"), **_condition_fields("Synced")},
        "f:history": {},
        "f:observedGeneration": {},
        "f:resolvedVersion": {},
    }
    body: dict[str, Any] = {
        "apiVersion": "promptalias.io/v1alpha1",
        "kind": "PromptAlias",
        "metadata": {
            "name": "production",
            "namespace": "team-a",
            "uid": "u-1",
            "resourceVersion": "42",
            "generation": 3,
            "finalizers": ["promptalias.io/alias"],
            "annotations": {
                LAST_APPLIED: json.dumps({"spec": {"prompt": "invoice-parser", "version": 3}}),
                "promptalias.io/rollback-to": "2",
            },
            "managedFields": [
                {
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "time": "2026-12-06T10:00:00Z",
                    "fieldsV1": {"f:spec": {".": {}, "f:prompt": {}, "f:alias": {}, "f:version": {}}},
                },
                {
                    "manager": "promptalias",
                    "operation": "Update",
                    "subresource": "status",
                    "time": "2026-12-06T10:00:01Z",
                    "fieldsV1": {"f:status": status_fields},
                },
                {
                    "manager": "kubectl-patch",
                    "operation": "Update",
                    "time": "2026-12-06T11:00:00Z",
                    "fieldsV1": {"f:spec": {"f:version": {}}},
                },
            ],
        },
        "spec": {
            "prompt": "invoice-parser",
            "alias": "production",
            "version": 3,
            "registryRef": {"name": "mlflow"},
        },
        "status": {"observedGeneration": 2, "history": [{"to": 2}]},
    }
    whole = copy.deepcopy(body)
    kept = slim_body(body)
    assert kept is body  # in place: kopf's copy of the body is the one slimmed (handlers/aliases.py)
    meta, kept_meta = whole["metadata"], kept["metadata"]
    assert (
        version_actor(kept_meta["managedFields"]) == version_actor(meta["managedFields"]) == "kubectl-patch"
    )
    assert alias_entry(kept) == alias_entry(whole)
    assert request_of(kept) == request_of(whole)
    assert wants_pass(kept) == wants_pass(whole)
    assert rollback_request(kept_meta) == rollback_request(meta) == 2
    assert kept["spec"] == whole["spec"]
    assert kept["status"] == whole["status"]
    assert {k: v for k, v in kept_meta.items() if k not in ("managedFields", "annotations")} == {
        k: v for k, v in meta.items() if k not in ("managedFields", "annotations")
    }
    assert kept_meta["annotations"] == {"promptalias.io/rollback-to": "2"}
    assert len(json.dumps(kept)) < 0.6 * len(json.dumps(whole))


def test_a_body_without_managed_fields_or_annotations_is_kept_whole() -> None:
    body = {"metadata": {"name": "a", "uid": "u"}, "spec": {"version": 1}}
    assert slim_body(copy.deepcopy(body)) == body
    only_status_writer = {
        "metadata": {"managedFields": [{"manager": "promptalias", "fieldsV1": {"f:status": {}}}]}
    }
    assert slim_body(only_status_writer) == {"metadata": {}}
