"""Write authority and claims across namespaces (reconcile/tenancy.py): every branch, no cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promptalias.api.conditions import Reason
from promptalias.api.promptalias import RegistryKind, RegistryRef
from promptalias.api.registry import ClusterPromptRegistrySpec, PromptRegistrySpec, RegistrySpec
from promptalias.reconcile.alias import Outcome
from promptalias.reconcile.ownership import Claim, Owner, winner
from promptalias.reconcile.registry import KnownRegistry, RegistryKey, resolve_registry
from promptalias.reconcile.tenancy import (
    AliasClaim,
    Authority,
    Refusal,
    WriteAction,
    authorize_write,
    holder,
    mark_refusal,
    matches,
    refused_outcome,
    same_namespace,
    serves_no_namespace,
    write_authority,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
URI = "http://mlflow:5000"


def cluster(*conditions: dict[str, Any]) -> ClusterPromptRegistrySpec:
    body: dict[str, Any] = {"trackingUri": URI}
    if conditions:
        body["conditions"] = list(conditions)
    return ClusterPromptRegistrySpec.model_validate(body)


def own(write_prompts: list[str] | None = None) -> PromptRegistrySpec:
    body: dict[str, Any] = {"trackingUri": URI}
    if write_prompts is not None:
        body["writePrompts"] = write_prompts
    return PromptRegistrySpec.model_validate(body)


SHARED = cluster(
    {"namespaces": ["billing"], "writePrompts": ["invoice-*"]},
    {"namespaceSelector": {"matchLabels": {"team": "search"}}, "writePrompts": ["search-?", "ranker"]},
    {"namespaces": ["readers"]},
)


@pytest.mark.parametrize(
    ("spec", "namespace", "labels", "prompt", "expected"),
    [
        pytest.param(SHARED, "billing", {}, "invoice-parser", Authority.GRANTED, id="granted-by-name"),
        pytest.param(SHARED, "billing", {}, "search-a", Authority.NONE, id="other-teams-prompt"),
        pytest.param(SHARED, "s1", {"team": "search"}, "search-a", Authority.GRANTED, id="granted-by-label"),
        pytest.param(SHARED, "s1", {"team": "search"}, "search-ab", Authority.NONE, id="glob-?-is-one-char"),
        pytest.param(SHARED, "s1", {"team": "search"}, "ranker", Authority.GRANTED, id="exact-name"),
        pytest.param(SHARED, "readers", {}, "invoice-parser", Authority.NONE, id="condition-without-writes"),
        pytest.param(SHARED, "stranger", {}, "invoice-parser", Authority.NONE, id="namespace-not-allowed"),
        pytest.param(SHARED, "billing", None, "invoice-parser", Authority.NONE, id="labels-not-known-yet"),
        pytest.param(cluster(), "billing", {}, "invoice-parser", Authority.NONE, id="no-conditions-deny"),
        pytest.param(SHARED, "billing", {}, "Invoice-parser", Authority.NONE, id="case-sensitive"),
        pytest.param(own(), "billing", {}, "anything", Authority.OWN, id="own-registry-default-all"),
        pytest.param(
            own(["invoice-*"]), "billing", {}, "invoice-x", Authority.OWN, id="own-restricted-match"
        ),
        pytest.param(own(["invoice-*"]), "billing", {}, "search-a", Authority.NONE, id="own-restricted-miss"),
        pytest.param(own([]), "billing", {}, "invoice-x", Authority.NONE, id="own-read-only"),
        pytest.param(
            RegistrySpec.model_validate({"trackingUri": URI}), "b", {}, "p", Authority.NONE, id="unknown-kind"
        ),
    ],
)
def test_write_authority(
    spec: RegistrySpec, namespace: str, labels: dict[str, str] | None, prompt: str, expected: Authority
) -> None:
    assert write_authority(spec, namespace, labels, prompt) == expected


def test_matches_globs() -> None:
    assert matches(["*"], "x")
    assert matches(["a-[0-9]"], "a-7")
    assert not matches(["a-[0-9]"], "a-x")
    assert not matches([], "x")


def claim(
    namespace: str,
    name: str = "pa",
    *,
    minutes: int = 0,
    authority: Authority = Authority.OWN,
    pinned: bool = True,
) -> AliasClaim:
    return AliasClaim(
        namespace=namespace,
        name=name,
        uid=f"{namespace}-{name}",
        created=T0 + timedelta(minutes=minutes),
        authority=authority,
        pinned=pinned,
    )


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        pytest.param([], None, id="nobody"),
        pytest.param([claim("a", authority=Authority.NONE)], None, id="readers-never-hold"),
        pytest.param([claim("a", minutes=1), claim("b", minutes=0)], "b/pa", id="oldest"),
        pytest.param(
            [claim("a", minutes=0), claim("b", minutes=5, authority=Authority.GRANTED)],
            "b/pa",
            id="granted-beats-older-own",
        ),
        pytest.param(
            [claim("a", minutes=0, authority=Authority.NONE), claim("b", minutes=5)],
            "b/pa",
            id="older-reader-is-no-claim",
        ),
        pytest.param(
            [claim("a", minutes=0, pinned=False), claim("b", minutes=5)], "a/pa", id="followers-claim-too"
        ),
        pytest.param([claim("b", "y"), claim("b", "x"), claim("a", "z")], "a/z", id="tie-by-namespace-name"),
    ],
)
def test_holder(claims: list[AliasClaim], expected: str | None) -> None:
    found = holder(claims)
    assert (found.ref if found else None) == expected


def authorize(
    claims: list[AliasClaim],
    *,
    namespace: str = "attacker",
    authority: Authority = Authority.OWN,
    action: WriteAction = WriteAction.PIN,
) -> str | None:
    refusal = authorize_write(
        action,
        namespace=namespace,
        prompt="invoice-parser",
        alias="production",
        registry="ClusterPromptRegistry shared",
        authority=authority,
        claims=claims,
    )
    return refusal.message if refusal else None


def test_no_authority_is_refused_whatever_the_claims() -> None:
    message = authorize([], authority=Authority.NONE, action=WriteAction.TAKEOVER)
    assert message is not None
    assert message.startswith(
        "ClusterPromptRegistry shared gives namespace attacker no write access to prompt 'invoice-parser'"
    )
    assert "will not take over alias 'production'" in message
    assert "MLflow is unchanged" in message
    assert "writePrompts" in message


@pytest.mark.parametrize(
    ("claims", "authority", "refused_by"),
    [
        pytest.param([], Authority.OWN, None, id="unclaimed-alias"),
        pytest.param([claim("attacker")], Authority.OWN, None, id="only-own-claim"),
        pytest.param(
            [claim("attacker", "w", minutes=1), claim("attacker", "f", pinned=False)],
            Authority.OWN,
            None,
            id="own-namespace-follower-does-not-block",
        ),
        pytest.param(
            [claim("victim", pinned=False), claim("attacker", minutes=1)],
            Authority.OWN,
            "PromptAlias victim/pa follows it with it claimed the alias first",
            id="pin-a-followed-alias",
        ),
        pytest.param(
            [claim("attacker"), claim("victim", minutes=3, authority=Authority.GRANTED)],
            Authority.OWN,
            "PromptAlias victim/pa pins it with write access granted by a ClusterPromptRegistry",
            id="squatter-loses-to-a-grant",
        ),
        pytest.param(
            [claim("attacker", authority=Authority.NONE), claim("victim", minutes=3)],
            Authority.OWN,
            "PromptAlias victim/pa pins it",
            id="reader-claim-does-not-count",
        ),
        pytest.param(
            [
                claim("victim", minutes=9, authority=Authority.OWN),
                claim("attacker", authority=Authority.GRANTED),
            ],
            Authority.GRANTED,
            None,
            id="grant-outranks-older-own",
        ),
    ],
)
def test_authorize_write(claims: list[AliasClaim], authority: Authority, refused_by: str | None) -> None:
    message = authorize(claims, authority=authority)
    if refused_by is None:
        assert message is None
    else:
        assert message is not None
        assert message.startswith("alias 'production' of prompt 'invoice-parser' is held by namespace victim")
        assert refused_by in message
        assert "MLflow is unchanged" in message


def test_refusal_names_the_holder() -> None:
    refusal = authorize_write(
        WriteAction.ROLLBACK,
        namespace="attacker",
        prompt="p",
        alias="production",
        registry="PromptRegistry attacker/mlflow",
        authority=Authority.OWN,
        claims=[claim("victim", "follower", pinned=False)],
    )
    assert refusal is not None
    assert refusal.holder == "victim/follower"
    assert "will not roll back the alias" in refusal.message


@pytest.mark.parametrize(
    ("mark", "refused"),
    [
        pytest.param(None, False, id="no-mark"),
        pytest.param(Owner("c1", "ns", "baseline"), False, id="the-baseline"),
        pytest.param(Owner("c1", "ns", "promptexperiment/e"), False, id="the-experiment"),
        pytest.param(Owner("c1", "victim", "pinned"), True, id="another-resource"),
        pytest.param(Owner("c2", "ns", "baseline"), True, id="another-cluster"),
    ],
)
def test_mark_refusal(mark: Owner | None, refused: bool) -> None:
    allowed = [Owner("c1", "ns", "baseline"), Owner("c1", "ns", "promptexperiment/e")]
    refusal = mark_refusal(mark, allowed, action=WriteAction.PROMOTE, prompt="p", alias="production")
    assert (refusal is not None) == refused
    if refusal is not None:
        assert refusal.message.startswith(f"alias 'production' of prompt 'p' is managed by {mark}")


def test_cluster_registry_without_conditions_serves_no_namespace() -> None:
    key = RegistryKey(RegistryKind.CLUSTER_PROMPT_REGISTRY, None, "shared")
    known = {key: KnownRegistry(key, cluster(), "uid", 1)}
    ref = RegistryRef.model_validate({"kind": "ClusterPromptRegistry", "name": "shared"})
    result = resolve_registry(ref, "billing", {}, known)
    assert not isinstance(result, KnownRegistry)
    assert "has no spec.conditions" in result.message
    assert not cluster().allows_namespace("billing", {})


def test_a_cluster_registry_without_conditions_says_so() -> None:
    message = serves_no_namespace(cluster())
    assert message is not None
    assert message.startswith("spec.conditions is empty, so no namespace may use this ClusterPromptRegistry")
    assert serves_no_namespace(SHARED) is None
    assert serves_no_namespace(own()) is None


def test_a_refused_request_keeps_the_resolution_but_says_not_authorized() -> None:
    followed = Outcome(ready=True, reason=Reason.SYNCED, message="following", resolved_version=3, synced=True)
    assert refused_outcome(followed, None) is followed
    refused = refused_outcome(
        followed, Refusal("alias 'production' is held by namespace victim.", "victim/pa")
    )
    assert (refused.ready, refused.reason, refused.stalled, refused.owner) == (
        False,
        Reason.NOT_AUTHORIZED,
        True,
        "victim/pa",
    )
    assert refused.resolved_version == 3  # still following MLflow
    assert refused.message.endswith("Remove the request annotation to withdraw it.")


def test_only_writers_of_the_same_namespace_are_rivals_once_a_namespace_may_write() -> None:
    def writer(namespace: str, minutes: int) -> Claim:
        created = T0 + timedelta(minutes=minutes)
        return Claim(URI, "p", "production", namespace, "pa", f"{namespace}-uid", created, writes=True)

    claims = [writer("squatter", 0), writer("team", 5)]
    assert winner(claims, (URI, "p", "production")) == claims[0]  # the oldest-claim rule alone
    assert winner(same_namespace(claims, "team"), (URI, "p", "production")) == claims[1]
