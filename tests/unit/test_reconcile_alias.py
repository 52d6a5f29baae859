"""Pure planning of PromptAlias reconciles: every branch, no cluster, no MLflow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from promptalias.api.conditions import Reason
from promptalias.api.promptalias import HistoryEntry, HistoryReason, PromptAliasSpec, PromptAliasStatus
from promptalias.reconcile.alias import (
    AliasPlan,
    Outcome,
    plan_alias,
    policy_violation,
    settle,
    settled_from_plan,
)
from promptalias.reconcile.ownership import Claim, Owner, winner

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ME = Owner("c1", "billing", "parser")
OTHER = Owner("c2", "billing", "parser")


def spec(version: int | None = 3, **extra: Any) -> PromptAliasSpec:
    body: dict[str, Any] = {
        "registryRef": {"name": "mlflow"},
        "prompt": "invoice-parser",
        "alias": "production",
    }
    if version is not None:
        body["version"] = version
    body.update(extra)
    return PromptAliasSpec.model_validate(body)


def status(
    resolved: int | None = None, previous: int | None = None, generation: int | None = None
) -> PromptAliasStatus:
    return PromptAliasStatus(
        resolved_version=resolved, previous_version=previous, observed_generation=generation
    )


def plan(
    s: PromptAliasSpec,
    st: PromptAliasStatus,
    current: int | None,
    *,
    generation: int = 2,
    owner: Owner | None = ME,
    **kw: Any,
) -> AliasPlan:
    return plan_alias(s, st, generation=generation, current=current, owner_mark=owner, me=ME, now=NOW, **kw)


def moved(p: AliasPlan) -> tuple[str, int | None, int | None] | None:
    if p.history is None:
        return None
    return (str(p.history.reason), p.history.previous_version, p.history.version)


# (name, spec version, status(resolved, previous, observedGeneration), current in MLflow, drift policy,
#  expected write, expected resolved, expected history move)
CASES = [
    ("first sync writes", 3, (None, None, None), None, "Enforce", 3, 3, ("Applied", None, 3)),
    ("first sync adopts", 3, (None, None, None), 3, "Enforce", None, 3, ("Adopted", None, 3)),
    ("spec change moves alias", 3, (2, 1, 1), 2, "Enforce", 3, 3, ("Applied", 2, 3)),
    ("back to previous is a rollback", 2, (3, 2, 1), 3, "Enforce", 2, 2, ("Rollback", 3, 2)),
    ("in sync: nothing to do", 3, (3, 2, 2), 3, "Enforce", None, 3, None),
    ("crash after write: record once", 3, (2, 1, 1), 3, "Enforce", None, 3, ("Applied", 2, 3)),
    ("drift enforced", 3, (3, 2, 2), 1, "Enforce", 3, 3, ("DriftCorrected", 1, 3)),
    ("deleted alias recreated", 3, (3, 2, 2), None, "Enforce", 3, 3, ("DriftCorrected", None, 3)),
    ("drift reported", 3, (3, 2, 2), 1, "Report", None, 1, ("Observed", 3, 1)),
    ("drift already reported", 3, (1, 3, 2), 1, "Report", None, 1, None),
    ("drift reported then moved back", 3, (1, 3, 2), 3, "Report", None, 3, ("Observed", 1, 3)),
    ("spec change while drifted (Report)", 4, (1, 3, 1), 1, "Report", 4, 4, ("Applied", 1, 4)),
]


@pytest.mark.parametrize(
    ("version", "st", "current", "drift", "write", "resolved", "move"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_pinned_mode(
    version: int,
    st: tuple[Any, Any, Any],
    current: int | None,
    drift: str,
    write: int | None,
    resolved: int | None,
    move: tuple[str, Any, int] | None,
) -> None:
    p = plan(spec(version, driftPolicy=drift), status(*st), current)
    assert p.blocked is None
    assert p.write_version == write
    assert p.resolved_version == resolved
    assert moved(p) == move
    assert p.drifted == (drift == "Report" and write is None and current != version)


def test_alias_owned_elsewhere_is_blocked_and_never_written() -> None:
    p = plan(spec(3), status(2, 1, 1), 2, owner=OTHER)
    assert p.blocked is not None
    assert p.blocked.reason == Reason.OWNED_ELSEWHERE
    assert p.blocked.owner == str(OTHER)
    assert not p.writes


def test_takeover_claims_and_is_audited() -> None:
    p = plan(spec(3), status(2, 1, 1), 2, owner=OTHER, takeover=True)
    assert p.claim
    assert p.write_version == 3
    assert p.took_over is not None
    assert str(OTHER) in p.took_over


def test_unowned_alias_is_claimed_on_first_write() -> None:
    assert plan(spec(3), status(), None, owner=None).claim
    assert not plan(spec(3), status(3, 2, 2), 3).claim


FOLLOW = [
    ("first observation", (None, None), 4, None, 4, ("Observed", None, 4)),
    ("moved in MLflow", (4, 3), 5, None, 5, ("Observed", 4, 5)),
    ("no change", (4, 3), 4, None, 4, None),
    ("rollback request", (5, 4), 5, 4, 4, ("Rollback", 5, 4)),
]


@pytest.mark.parametrize(
    ("st", "current", "rollback", "resolved", "move"), [c[1:] for c in FOLLOW], ids=[c[0] for c in FOLLOW]
)
def test_follow_mode(
    st: tuple[Any, Any], current: int, rollback: int | None, resolved: int, move: tuple[str, Any, int] | None
) -> None:
    p = plan(spec(None), status(*st, generation=2), current, owner=None, rollback_to=rollback)
    assert p.resolved_version == resolved
    assert moved(p) == move
    assert p.write_version == (rollback if rollback is not None else None)
    assert not p.claim


def test_follow_mode_never_writes_and_keeps_last_good_when_alias_vanishes() -> None:
    p = plan(spec(None), status(4, 3, 2), None, owner=None)
    assert p.alias_missing
    assert p.resolved_version == 4
    assert not p.writes
    outcome = settled_from_plan(p, spec(None), digest=None, config_map="cm")
    assert outcome.reason == Reason.ALIAS_NOT_FOUND
    assert not outcome.ready
    assert not outcome.stalled


def test_switching_to_follow_releases_our_owner_tag() -> None:
    assert plan(spec(None), status(3, 2, 1), 3, owner=ME).release
    assert not plan(spec(None), status(3, 2, 1), 3, owner=OTHER).release


def test_policy_violation_names_missing_and_wrong_tags() -> None:
    assert policy_violation(None, {}, 3) is None
    assert policy_violation({"approved": "true"}, {"approved": "true", "x": "y"}, 3) is None
    message = policy_violation({"approved": "true", "team": "billing"}, {"approved": "no"}, 3)
    assert message is not None
    assert "approved='true' (found 'no')" in message
    assert "team='billing' (missing)" in message
    assert "version 3" in message


def _entry(version: int) -> HistoryEntry:
    return HistoryEntry(version=version, previous_version=version - 1, time=NOW, reason=HistoryReason.APPLIED)


def test_settle_sets_kstatus_conditions_and_bounds_history() -> None:
    s = spec(3, historyLimit=3)
    st = PromptAliasStatus(history=[_entry(v) for v in (2, 3, 4)])
    p = plan(s, status(), None)
    outcome = settled_from_plan(p, s, digest="sha256:" + "0" * 64, config_map="promptalias-parser")
    new = settle(st, outcome, spec=s, generation=7, now=NOW)
    assert new.observed_generation == 7
    assert [h.version for h in new.history] == [3, 4, 3]
    ready = new.condition("Ready")
    assert ready is not None
    assert (ready.status, ready.reason, ready.observed_generation) == ("True", "Synced", 7)
    assert new.condition("Stalled") is None
    drifted = new.condition("Drifted")
    assert drifted is not None
    assert drifted.status == "False"
    assert new.config_map_ref is not None
    assert new.config_map_ref.name == "promptalias-parser"
    assert new.last_sync_time == NOW


def test_stalled_keeps_resolution_and_transition_time() -> None:
    s = spec(3)
    synced = settle(
        PromptAliasStatus(),
        settled_from_plan(plan(s, status(), 3), s, digest=None, config_map=None),
        spec=s,
        generation=1,
        now=NOW,
    )
    later = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
    stalled = settle(
        synced,
        Outcome(
            ready=False, reason=Reason.VERSION_NOT_FOUND, message="gone", stalled=True, keep_resolution=True
        ),
        spec=s,
        generation=2,
        now=later,
    )
    assert stalled.resolved_version == 3
    stalled_condition = stalled.condition("Stalled")
    assert stalled_condition is not None
    assert stalled_condition.status == "True"
    ready = stalled.condition("Ready")
    assert ready is not None
    assert (ready.status, ready.last_transition_time) == ("False", later)
    again = settle(
        stalled,
        Outcome(
            ready=False, reason=Reason.VERSION_NOT_FOUND, message="still", stalled=True, keep_resolution=True
        ),
        spec=s,
        generation=2,
        now=datetime(2026, 11, 26, tzinfo=UTC),
    )
    ready_again = again.condition("Ready")
    assert ready_again is not None
    assert ready_again.last_transition_time == later  # only a flip moves lastTransitionTime


def test_transient_failure_is_reconciling_not_stalled() -> None:
    s = spec(3)
    new = settle(
        PromptAliasStatus(),
        Outcome(
            ready=False,
            reason=Reason.REGISTRY_UNAVAILABLE,
            message="down",
            reconciling=True,
            keep_resolution=True,
        ),
        spec=s,
        generation=1,
        now=NOW,
    )
    assert new.condition("Stalled") is None
    reconciling = new.condition("Reconciling")
    assert reconciling is not None
    assert reconciling.status == "True"


def _claim(name: str, minute: int, writes: bool = True, endpoint: str = "http://m") -> Claim:
    return Claim(
        endpoint,
        "p",
        "production",
        "ns",
        name,
        f"uid-{name}",
        datetime(2026, 1, 1, 0, minute, tzinfo=UTC),
        writes,
    )


def test_oldest_writer_wins_and_readers_never_conflict() -> None:
    claims = [
        _claim("young", 5),
        _claim("old", 1),
        _claim("reader", 0, writes=False),
        _claim("elsewhere", 0, endpoint="http://x"),
    ]
    found = winner(claims, ("http://m", "p", "production"))
    assert found is not None
    assert found.name == "old"
    assert winner([_claim("reader", 0, writes=False)], ("http://m", "p", "production")) is None


def test_owner_tag_round_trip_and_garbage() -> None:
    assert Owner.from_tag(ME.to_tag()) == ME
    assert Owner.from_tag(None) is None
    unknown = Owner.from_tag("not json")
    assert unknown is not None
    assert unknown != ME


def test_namespace_selector() -> None:
    from promptalias.reconcile.scope import parse_selector, selected

    assert selected(parse_selector(""), None)
    sel = parse_selector("team=billing, env!=dev, managed, !frozen")
    assert selected(sel, {"team": "billing", "env": "prod", "managed": ""})
    assert not selected(sel, {"team": "billing", "env": "dev", "managed": ""})
    assert not selected(sel, {"team": "billing", "managed": "", "frozen": "y"})
    assert not selected(sel, {"team": "ops", "managed": ""})
    assert not selected(sel, None)
    with pytest.raises(ValueError, match="invalid"):
        parse_selector("=x")
