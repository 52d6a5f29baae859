"""Pure planning of PromptAlias reconciles: every branch, no cluster, no MLflow."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from promptalias.api.conditions import Reason
from promptalias.api.promptalias import HistoryEntry, HistoryReason, PromptAliasSpec, PromptAliasStatus
from promptalias.reconcile.alias import (
    AliasPlan,
    Outcome,
    intend,
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
    resolved: int | None = None,
    previous: int | None = None,
    generation: int | None = None,
    applied: int | None = None,
) -> PromptAliasStatus:
    return PromptAliasStatus(
        resolved_version=resolved,
        previous_version=previous,
        observed_generation=generation,
        applied_version=applied,
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


# (name, spec version, status(resolved, previous, appliedVersion), current in MLflow, drift policy,
#  expected write, expected resolved, expected history move)
# appliedVersion is the spec.version last carried out: a spec.version that differs is the user's
# pending change, whatever failed passes happened since; only an equal one makes a difference drift.
CASES = [
    ("first sync writes", 3, (None, None, None), None, "Enforce", 3, 3, ("Applied", None, 3)),
    ("first sync adopts", 3, (None, None, None), 3, "Enforce", None, 3, ("Adopted", None, 3)),
    ("spec change moves alias", 3, (2, 1, 2), 2, "Enforce", 3, 3, ("Applied", 2, 3)),
    ("back to previous is a rollback", 2, (3, 2, 3), 3, "Enforce", 2, 2, ("Rollback", 3, 2)),
    ("in sync: nothing to do", 3, (3, 2, 3), 3, "Enforce", None, 3, None),
    ("crash after write: record once", 3, (2, 1, 2), 3, "Enforce", None, 3, ("Applied", 2, 3)),
    ("drift enforced", 3, (3, 2, 3), 1, "Enforce", 3, 3, ("DriftCorrected", 1, 3)),
    ("deleted alias recreated", 3, (3, 2, 3), None, "Enforce", 3, 3, ("DriftCorrected", None, 3)),
    ("drift reported", 3, (3, 2, 3), 1, "Report", None, 1, ("Observed", 3, 1)),
    ("drift already reported", 3, (1, 3, 3), 1, "Report", None, 1, None),
    ("drift reported then moved back", 3, (1, 3, 3), 3, "Report", None, 3, ("Observed", 1, 3)),
    ("spec change while drifted (Report)", 4, (1, 3, 3), 1, "Report", 4, 4, ("Applied", 1, 4)),
    # A change whose first pass failed (version not yet registered, policy, conflict, credentials,
    # MLflow down) is still the user's change: applied and recorded as Applied, never as drift.
    ("failed first pass, then applied (Report)", 4, (3, 2, 3), 3, "Report", 4, 4, ("Applied", 3, 4)),
    ("failed first pass, then applied (Enforce)", 4, (3, 2, 3), 3, "Enforce", 4, 4, ("Applied", 3, 4)),
    ("failed first pass back to previous", 2, (3, 2, 3), 3, "Report", 2, 2, ("Rollback", 3, 2)),
    # A timed-out POST that MLflow carried out: the alias is already there; it is the user's move.
    ("timed-out write MLflow applied (Report)", 4, (3, 2, 3), 4, "Report", None, 4, ("Applied", 3, 4)),
    ("timed-out write MLflow applied (Enforce)", 4, (3, 2, 3), 4, "Enforce", None, 4, ("Applied", 3, 4)),
    ("follow to pinned, first pass failed", 4, (5, 3, None), 5, "Report", 4, 4, ("Applied", 5, 4)),
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
    p = plan(spec(version, driftPolicy=drift), status(st[0], st[1], applied=st[2]), current)
    assert p.blocked is None
    assert p.write_version == write
    assert p.resolved_version == resolved
    assert moved(p) == move
    assert p.drifted == (drift == "Report" and write is None and current != version)


def _synced(version: int, generation: int) -> PromptAliasStatus:
    s = spec(version)
    return settle(
        PromptAliasStatus(),
        settled_from_plan(plan(s, status(), version, generation=generation), s, digest=None, config_map=None),
        spec=s,
        generation=generation,
        now=NOW,
    )


FAILURES = [
    (Reason.VERSION_NOT_FOUND, True),  # GitOps merged before the version was registered
    (Reason.POLICY_VIOLATION, True),
    (Reason.CONFLICT, True),
    (Reason.INVALID_REGISTRY, True),  # unauthorised
    (Reason.REGISTRY_UNAVAILABLE, False),  # MLflow down
]


@pytest.mark.parametrize("drift", ["Report", "Enforce"])
@pytest.mark.parametrize(("reason", "stalled"), FAILURES, ids=[str(f[0]) for f in FAILURES])
def test_a_change_whose_first_pass_failed_is_not_drift(drift: str, reason: Reason, stalled: bool) -> None:
    """observedGeneration is set by failed passes too; the change must still be the user's."""
    s = spec(4, driftPolicy=drift)
    failed = settle(
        _synced(3, generation=1),
        Outcome(
            ready=False,
            reason=reason,
            message="no",
            stalled=stalled,
            reconciling=not stalled,
            keep_resolution=True,
        ),
        spec=s,
        generation=2,
        now=NOW,
    )
    assert failed.observed_generation == 2
    p = plan(s, failed, 3, generation=2, spec_actor="argocd-controller")
    assert (p.write_version, p.drifted, moved(p)) == (4, False, ("Applied", 3, 4))
    assert p.history is not None
    assert p.history.actor == "argocd-controller"
    # ... and once applied, a later move outside Git is drift again.
    applied = settle(
        failed, settled_from_plan(p, s, digest=None, config_map=None), spec=s, generation=2, now=NOW
    )
    assert applied.applied_version == 4
    later = plan(s, applied, 1, generation=2)
    assert later.drifted == (drift == "Report")
    assert moved(later) == (("Observed", 4, 1) if drift == "Report" else ("DriftCorrected", 1, 4))


@pytest.mark.parametrize("drift", ["Report", "Enforce"])
def test_a_timed_out_write_that_mlflow_applied_is_the_users_move(drift: str) -> None:
    s = spec(4, driftPolicy=drift)
    failed = settle(
        _synced(3, generation=1),
        Outcome(ready=False, reason=Reason.REGISTRY_UNAVAILABLE, message="timeout", keep_resolution=True),
        spec=s,
        generation=2,
        now=NOW,
    )
    p = plan(s, failed, 4, generation=2, spec_actor="kubectl-patch")
    assert (p.write_version, p.drifted, moved(p)) == (None, False, ("Applied", 3, 4))


def _legacy(reason: Reason, generation: int) -> PromptAliasStatus:
    """A status written before appliedVersion existed."""
    st = _synced(3, generation=generation).model_copy(update={"applied_version": None})
    return settle(
        st,
        Outcome(ready=reason == Reason.SYNCED, reason=reason, message="m", keep_resolution=True),
        spec=spec(3),
        generation=generation,
        now=NOW,
    )


def test_status_without_applied_version_falls_back_to_the_last_pass() -> None:
    s = spec(3, driftPolicy="Report")
    assert plan(s, _legacy(Reason.SYNCED, 2), 1, generation=2).drifted  # synced at this generation
    assert plan(s, _legacy(Reason.DRIFT_DETECTED, 2), 1, generation=2).drifted
    assert plan(s, _legacy(Reason.VERSION_NOT_FOUND, 2), 1, generation=2).write_version == 3
    assert plan(s, _legacy(Reason.SYNCED, 1), 1, generation=2).write_version == 3  # a new generation


def _pending(st: PromptAliasStatus, version: int, previous: int) -> PromptAliasStatus:
    entry = HistoryEntry(
        version=version, previous_version=previous, time=NOW, reason=HistoryReason.APPLIED, actor="kubectl"
    )
    return st.model_copy(update={"pending_move": entry})


def test_a_move_written_before_a_crash_is_recovered_from_the_pending_move() -> None:
    """Killed between the MLflow write (2 -> 6) and the status write; then spec went back to 2."""
    st = _pending(_synced(2, generation=1), 6, 2)
    p = plan(spec(2), st, 6, generation=3)
    assert [(e.reason, e.previous_version, e.version, e.actor) for e in p.prior] == [
        (HistoryReason.APPLIED, 2, 6, "kubectl")
    ]
    assert (p.write_version, moved(p)) == (2, ("Rollback", 6, 2))
    after = settle(
        st, settled_from_plan(p, spec(2), digest=None, config_map=None), spec=spec(2), generation=3, now=NOW
    )
    assert [(h.previous_version, h.version) for h in after.history] == [(None, 2), (2, 6), (6, 2)]
    assert after.pending_move is None


def test_a_pending_move_that_never_reached_mlflow_is_dropped() -> None:
    st = _pending(_synced(2, generation=1), 6, 2)
    p = plan(spec(6), st, 2, generation=2)
    assert p.prior == ()
    assert (p.write_version, moved(p)) == (6, ("Applied", 2, 6))


def test_a_pending_move_mlflow_carried_out_is_recorded_once() -> None:
    st = _pending(_synced(2, generation=1), 6, 2)
    p = plan(spec(6), st, 6, generation=2)
    assert (p.write_version, p.history, len(p.prior)) == (None, None, 1)
    after = settle(
        st, settled_from_plan(p, spec(6), digest=None, config_map=None), spec=spec(6), generation=2, now=NOW
    )
    assert [(h.previous_version, h.version) for h in after.history] == [(None, 2), (2, 6)]
    again = plan(spec(6), after, 6, generation=2)
    assert (again.prior, again.history) == ((), None)


def test_intend_records_prior_moves_and_the_pending_one() -> None:
    s = spec(3)
    st = _synced(3, generation=1)
    p = plan(s, st, 1, generation=1)  # moved outside Git to 1: Observed 3 -> 1, then DriftCorrected 1 -> 3
    assert [(e.reason, e.previous_version, e.version) for e in p.prior] == [(HistoryReason.OBSERVED, 3, 1)]
    before = intend(st, p, spec=s)
    assert before.pending_move == p.history
    assert before.resolved_version == 1
    assert [(h.previous_version, h.version) for h in before.history] == [(None, 3), (3, 1)]
    # crashed before the write landed: the next pass records no second Observed entry
    retry = plan(s, before, 1, generation=1)
    assert (retry.prior, moved(retry)) == ((), ("DriftCorrected", 1, 3))


def _chain_ok(history: list[HistoryEntry]) -> bool:
    return all(b.previous_version == a.version for a, b in itertools.pairwise(history))


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("drift", ["Report", "Enforce"])
def test_fault_storm_keeps_one_chain_and_every_version_mlflow_held(seed: int, drift: str) -> None:
    """A simulated storm: spec changes, moves outside Git, crashes at every step of a pass."""
    import random

    rng = random.Random(seed)
    mlflow: int | None = None
    held: list[int] = []
    st = PromptAliasStatus()
    version, generation = 1, 1
    # MLflow's audit tag: the pending move whose write reached MLflow (the handler reads it from the
    # target version's promptalias.io/moved.<alias> tag, written right after set_alias).
    landed: HistoryEntry | None = None

    def set_alias(v: int) -> None:
        nonlocal mlflow
        mlflow = v
        if not held or held[-1] != v:
            held.append(v)

    def one_pass(s: PromptAliasSpec, crash: str) -> None:
        nonlocal st, landed
        pending = st.pending_move
        was_landed = pending is not None and pending == landed
        p = plan(s, st, mlflow, generation=generation, pending_landed=was_landed)
        if crash == "before-intent":
            return
        if p.writes:
            st = intend(st, p, spec=s)
            p = replace(p, prior=())
            if crash == "after-intent":
                return
            assert p.write_version is not None
            set_alias(p.write_version)
            landed = st.pending_move
            if crash == "after-write":
                return
        st = settle(
            st, settled_from_plan(p, s, digest=None, config_map=None), spec=s, generation=generation, now=NOW
        )

    one_pass(spec(version, driftPolicy=drift, historyLimit=100), "none")  # recorded before the storm
    for _ in range(60):
        event = rng.random()
        if event < 0.35:
            version, generation = rng.randint(1, 6), generation + 1
        crash = rng.choice(["none", "none", "before-intent", "after-intent", "after-write"])
        if 0.35 <= event < 0.45:
            # Someone moves it in MLflow (also while the operator is down after its own write); a
            # pass sees it before the next such move. A move undone between two reads of MLflow is
            # invisible to any poller.
            set_alias(rng.randint(1, 6))
            crash = "none"
        one_pass(spec(version, driftPolicy=drift, historyLimit=100), crash)
    for _ in range(3):  # quiet: converge
        one_pass(spec(version, driftPolicy=drift, historyLimit=100), "none")
    assert _chain_ok(st.history), [(h.previous_version, h.version) for h in st.history]
    recorded = [h.version for h in st.history]
    assert [v for i, v in enumerate(recorded) if i == 0 or recorded[i - 1] != v] == recorded  # no repeats
    assert recorded == held  # every version the alias held in MLflow, in order
    assert st.resolved_version == mlflow
    if drift == "Enforce":
        assert mlflow == version


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


def test_write_landed_reads_the_operators_own_audit_tag() -> None:
    from promptalias.reconcile.audit import audit_tag, write_landed

    key, value = audit_tag("production", by=str(ME), at=NOW, replaced=2)
    assert write_landed({key: value}, "production", by=str(ME), at=NOW)
    assert not write_landed({key: value}, "production", by=str(OTHER), at=NOW)  # someone else's move
    assert not write_landed({key: value}, "production", by=str(ME), at=NOW.replace(minute=1))  # older
    assert not write_landed({key: value}, "staging", by=str(ME), at=NOW)
    assert not write_landed({key: "{not json"}, "production", by=str(ME), at=NOW)
    assert not write_landed({}, "production", by=str(ME), at=NOW)


def test_a_landed_move_overwritten_while_the_operator_was_down_is_kept() -> None:
    """Written 2 -> 6, killed before the status write; someone moved it to 5 before the restart."""
    st = _pending(_synced(2, generation=1), 6, 2)
    report = plan(spec(6, driftPolicy="Report"), st, 5, generation=2, pending_landed=True)
    assert [(e.previous_version, e.version) for e in report.prior] == [(2, 6)]
    assert (report.write_version, moved(report)) == (None, ("Observed", 6, 5))
    enforce = plan(spec(6), st, 5, generation=2, pending_landed=True)
    assert [(str(e.reason), e.previous_version, e.version) for e in enforce.prior] == [
        ("Applied", 2, 6),
        ("Observed", 6, 5),
    ]
    assert (enforce.write_version, moved(enforce)) == (6, ("DriftCorrected", 5, 6))
    lost = plan(spec(6), st, 5, generation=2)  # no audit tag: the write never landed
    assert [(e.previous_version, e.version) for e in lost.prior] == [(2, 5)]
