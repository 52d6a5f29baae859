"""What to do with one PromptAlias, and the status that results.

Two sources of truth (DESIGN.md): with `spec.version` set, Git owns the alias and MLflow is made to
match; without it, MLflow owns the alias and the operator only follows (and records) its moves.

`plan_alias` decides from what was observed in MLflow; `settle` turns the result of carrying out the
plan into the next status. History entries are derived from status.resolvedVersion, not from event
counts, so a crash and a re-run never record the same move twice.

Two status fields keep the audit honest across failures and crashes:

- `appliedVersion` is the spec.version last carried out. A spec.version that differs from it is the
  user's pending change — applied (and recorded as theirs) as soon as MLflow allows it, however many
  passes failed in between (version not yet registered, policy, conflict, credentials, MLflow down).
  Only when they are equal is "the alias is elsewhere" drift. `observedGeneration` cannot tell: it is
  set by failed passes too.
- `pendingMove` is the history entry of a write, recorded (`intend`) before MLflow is written. A pass
  that finds the alias where a pending move put it records that entry first, so a crash (or a timed
  out write MLflow carried out) between the MLflow write and the status write loses no move.

History is one chain: every entry's previousVersion is the version of the entry before it. A move
made outside Git is recorded (Observed) before the operator's answer to it.

Over 400 lines on purpose: `plan_alias` and `settle` are one state machine over the same status
fields (appliedVersion, pendingMove, history); the table tests read it as one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from promptalias.api.conditions import (
    ConditionType,
    KstatusOutcome,
    Reason,
    find_condition,
    kstatus_conditions,
    make_condition,
    set_condition,
)
from promptalias.api.promptalias import (
    DriftPolicy,
    HistoryEntry,
    HistoryReason,
    ObjectReference,
    PromptAliasSpec,
    PromptAliasStatus,
)
from promptalias.reconcile.ownership import Owner
from promptalias.vocabulary import OPERATOR_FIELD_MANAGER as OPERATOR_ACTOR

MLFLOW_ACTOR: Final = "mlflow"


@dataclass(frozen=True)
class Blocked:
    """A problem retrying cannot fix (kstatus Stalled)."""

    reason: Reason
    message: str
    owner: str | None = None


@dataclass(frozen=True)
class AliasPlan:
    """What to write to MLflow, and what the status should say once it is written."""

    write_version: int | None = None  # set the alias to this version
    claim: bool = False  # write our owner tag before moving the alias
    release: bool = False  # remove our owner tag (we stopped managing the alias)
    resolved_version: int | None = None  # the alias afterwards; None: unknown or absent
    previous_version: int | None = None
    history: HistoryEntry | None = None
    drifted: bool = False
    blocked: Blocked | None = None
    alias_missing: bool = False  # follow mode: the alias does not exist in MLflow
    took_over: str | None = None  # the audit note when this plan claims an alias from another owner
    refused: str | None = None  # a one-shot request (rollback) that cannot be carried out, and why
    prior: tuple[HistoryEntry, ...] = ()  # moves to record before `history` (recovered or observed)

    @property
    def writes(self) -> bool:
        return self.write_version is not None


@dataclass(frozen=True)
class _Seen:
    """What a pass saw in MLflow, who it is and when: what both planners decide from."""

    current: int | None  # where the MLflow alias points (None: absent)
    owner_mark: Owner | None  # whom the prompt's owner tag names for this alias
    me: Owner
    now: datetime


def _entry(
    version: int | None,
    previous: int | None,
    reason: HistoryReason,
    now: datetime,
    actor: str | None,
    message: str,
) -> HistoryEntry:
    return HistoryEntry(
        version=version, previous_version=previous, time=now, reason=reason, actor=actor, message=message
    )


def _observed(version: int | None, previous: int | None, now: datetime, message: str) -> HistoryEntry:
    """A move made in MLflow, outside Git, that the operator only saw."""
    return _entry(version, previous, HistoryReason.OBSERVED, now, MLFLOW_ACTOR, message)


def plan_alias(
    spec: PromptAliasSpec,
    status: PromptAliasStatus,
    *,
    generation: int,
    current: int | None,
    owner_mark: Owner | None,
    me: Owner,
    now: datetime,
    spec_actor: str | None = None,
    rollback_to: int | None = None,
    takeover: bool = False,
    pending_landed: bool = False,
) -> AliasPlan:
    """Decide what to do, given where the MLflow alias points now (`current`, None when absent).

    `takeover` (pinned mode) claims an alias whose MLflow owner tag names someone else.
    `pending_landed`: MLflow's own record (the audit tag on the pending move's version) says the
    pending write was carried out, even though the alias is elsewhere now.
    """
    status, recovered = recover_pending_move(status, current, landed=pending_landed)
    seen = _Seen(current, owner_mark, me, now)
    if spec.version is None:
        plan = _plan_follow(spec, status, seen, rollback_to=rollback_to)
    else:
        # An explicit, audited takeover claims the alias from the owner its MLflow tag names.
        taking_over = takeover and owner_mark is not None and owner_mark != me
        if taking_over:
            seen = replace(seen, owner_mark=None)
        plan = _plan_pinned(spec, status, seen, generation=generation, spec_actor=spec_actor)
        if taking_over:
            plan = replace(plan, claim=True, took_over=f"took over alias {spec.alias!r} from {owner_mark}")
    if recovered is not None:
        plan = replace(plan, prior=(recovered, *plan.prior))
    return plan


def recover_pending_move(
    status: PromptAliasStatus, current: int | None, *, landed: bool = False
) -> tuple[PromptAliasStatus, HistoryEntry | None]:
    """The status as if the last pass had recorded its pending move, and that move (None: nothing to do).

    The move happened when MLflow's alias is where it was going, or when `landed` (MLflow's audit
    tag on the target version says our write was carried out: someone moved the alias again while
    we were down — the plan then records their move after ours). Otherwise the write never landed
    and the pending move is dropped.
    """
    intent = status.pending_move
    if intent is None:
        return status, None
    already = bool(status.history) and status.history[-1] == intent
    arrived = current is not None and current == intent.version
    if already or not (arrived or landed):
        return status.model_copy(update={"pending_move": None}), None
    recorded = _record(status, intent).model_copy(
        update={"pending_move": None, "applied_version": intent.version}
    )
    return recorded, intent


def _record(status: PromptAliasStatus, entry: HistoryEntry) -> PromptAliasStatus:
    """`status` after `entry`: history appended (unbounded; `settle` bounds it), resolution moved."""
    return status.model_copy(
        update={
            "history": [*status.history, entry],
            "resolved_version": entry.version,
            "previous_version": entry.previous_version,
        }
    )


def intend(status: PromptAliasStatus, plan: AliasPlan, *, spec: PromptAliasSpec) -> PromptAliasStatus:
    """The status to write BEFORE carrying out `plan`'s MLflow write: prior moves recorded, the write
    itself recorded as `pendingMove` (conditions untouched). Only for plans that write."""
    recorded = status
    for entry in plan.prior:
        recorded = _record(recorded, entry)
    return recorded.model_copy(
        update={"history": recorded.history[-spec.history_limit :], "pending_move": plan.history}
    )


def _plan_pinned(
    spec: PromptAliasSpec, status: PromptAliasStatus, seen: _Seen, *, generation: int, spec_actor: str | None
) -> AliasPlan:
    current, owner_mark, me, now = seen.current, seen.owner_mark, seen.me, seen.now
    desired = spec.version
    assert desired is not None
    if owner_mark is not None and owner_mark != me:
        return AliasPlan(
            blocked=Blocked(
                Reason.OWNED_ELSEWHERE,
                f"alias {spec.alias!r} of prompt {spec.prompt!r} is managed by {owner_mark} (owner tag "
                "on the MLflow prompt); this resource will not move it. Delete the other owner's resource, "
                "or take over explicitly with `promptalias takeover`.",
                owner=str(owner_mark),
            ),
            resolved_version=current,
        )
    claim = owner_mark is None
    known = status.resolved_version
    # Was this spec.version carried out before? If so, a difference now was made outside Git; if
    # not, it is the user's change, whatever earlier (failed) passes saw.
    seen_before = applied_version(spec, status, generation) == desired
    if current == desired:
        history = None
        if known != desired:
            if known is None:
                reason, actor, message = (
                    HistoryReason.ADOPTED,
                    None,
                    f"alias already pointed at version {desired}",
                )
            elif seen_before:
                reason, actor = HistoryReason.OBSERVED, MLFLOW_ACTOR
                message = f"alias was moved back to version {desired} outside Git"
            else:
                reason, actor = _applied_reason(desired, status), spec_actor
                message = f"alias moved from version {known} to {desired}"
            history = _entry(desired, known, reason, now, actor, message)
        previous = known if known not in (None, desired) else status.previous_version
        return AliasPlan(claim=claim, resolved_version=desired, previous_version=previous, history=history)
    if seen_before and spec.drift_policy == DriftPolicy.REPORT:
        history = None
        if current is not None and known != current:
            history = _observed(
                current,
                known,
                now,
                f"alias moved outside Git to version {current}; driftPolicy Report leaves it there",
            )
        return AliasPlan(
            resolved_version=current,
            previous_version=known if current is not None and known != current else status.previous_version,
            history=history,
            drifted=True,
        )
    prior = _outside_move(known, current, now)
    if seen_before:
        # Someone moved (or deleted) the alias after we set it: put it back (driftPolicy Enforce).
        message = (
            f"alias was moved outside Git to version {current}; moved back to {desired}"
            if current is not None
            else f"alias was deleted outside Git; recreated at version {desired}"
        )
        return AliasPlan(
            write_version=desired,
            claim=claim,
            resolved_version=desired,
            previous_version=current if current is not None else status.previous_version,
            history=_entry(desired, current, HistoryReason.DRIFT_CORRECTED, now, OPERATOR_ACTOR, message),
            prior=prior,
        )
    reason = _applied_reason(desired, status if not prior else _record(status, prior[0]))
    message = (
        f"alias moved from version {current} to {desired}"
        if current is not None
        else f"alias set to {desired}"
    )
    return AliasPlan(
        write_version=desired,
        claim=claim,
        resolved_version=desired,
        previous_version=current if current is not None else known,
        history=_entry(desired, current, reason, now, spec_actor, message),
        prior=prior,
    )


def applied_version(spec: PromptAliasSpec, status: PromptAliasStatus, generation: int) -> int | None:
    """The spec.version last carried out (status.appliedVersion).

    A status written before appliedVersion existed counts this generation's spec.version as carried
    out when its last pass for this generation ended Synced or DriftDetected.
    """
    if status.applied_version is not None or status.resolved_version is None:
        return status.applied_version
    ready = find_condition(status.conditions, ConditionType.READY)
    legacy_done = ready is not None and ready.reason in (Reason.SYNCED, Reason.DRIFT_DETECTED)
    return spec.version if legacy_done and status.observed_generation == generation else None


def _outside_move(known: int | None, current: int | None, now: datetime) -> tuple[HistoryEntry, ...]:
    """The Observed entry for a move made outside Git from `known` to `current` (none if no move)."""
    if known is None or known == current:
        return ()
    if current is None:
        return (_observed(None, known, now, "alias deleted outside Git"),)
    return (_observed(current, known, now, f"alias moved outside Git from version {known} to {current}"),)


def _applied_reason(desired: int, status: PromptAliasStatus) -> HistoryReason:
    """Returning to the version before the last move is a rollback; anything else is an apply."""
    if status.previous_version is not None and desired == status.previous_version:
        return HistoryReason.ROLLBACK
    return HistoryReason.APPLIED


def _plan_follow(
    spec: PromptAliasSpec, status: PromptAliasStatus, seen: _Seen, *, rollback_to: int | None
) -> AliasPlan:
    current, owner_mark, me, now = seen.current, seen.owner_mark, seen.me, seen.now
    known = status.resolved_version
    release = owner_mark == me  # switched from pinned to follow: stop claiming the alias
    refused = None
    if rollback_to is not None and owner_mark is not None and owner_mark != me:
        # Another cluster pins this alias: moving it would only start a tug of war.
        refused = (
            f"rollback to version {rollback_to} refused: alias {spec.alias!r} is managed by {owner_mark}"
        )
        rollback_to = None
    if rollback_to is not None and current is not None and rollback_to != current:
        observed: tuple[HistoryEntry, ...] = ()
        if known is not None and known != current:
            observed = (
                _observed(current, known, now, f"alias moved in MLflow to version {current} (was {known})"),
            )
        return AliasPlan(
            write_version=rollback_to,
            release=release,
            resolved_version=rollback_to,
            previous_version=current,
            history=_entry(
                rollback_to,
                current,
                HistoryReason.ROLLBACK,
                now,
                OPERATOR_ACTOR,
                f"rollback requested: alias moved in MLflow from version {current} to {rollback_to}",
            ),
            prior=observed,
        )
    if current is None:
        last = status.history[-1] if status.history else None
        deletion_recorded = last is not None and last.version is None
        gone = None
        if known is not None and not deletion_recorded:
            gone = _observed(None, known, now, "alias deleted in MLflow")
        return AliasPlan(
            release=release,
            resolved_version=known,
            previous_version=status.previous_version,
            history=gone,
            alias_missing=True,
            refused=refused,
        )
    history = None
    previous = status.previous_version
    if known != current:
        previous = known
        was = f" (was {known})" if known is not None else ""
        history = _observed(current, known, now, f"alias moved in MLflow to version {current}{was}")
    return AliasPlan(
        release=release, resolved_version=current, previous_version=previous, history=history, refused=refused
    )


def policy_violation(required: Mapping[str, str] | None, tags: Mapping[str, str], version: int) -> str | None:
    """A message naming the missing or wrong tags, or None when `tags` satisfy the policy."""
    if not required:
        return None
    wrong = sorted(key for key, value in required.items() if tags.get(key) != value)
    if not wrong:
        return None
    detail = ", ".join(
        f"{key}={required[key]!r} (found {tags[key]!r})"
        if key in tags
        else f"{key}={required[key]!r} (missing)"
        for key in wrong
    )
    return (
        f"version {version} lacks the tags spec.policy.requireVersionTags requires: {detail}. "
        "Tag the version in MLflow or change the policy."
    )


# ---- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome(KstatusOutcome):
    """How a reconcile attempt ended; `settle` turns it into the next status."""

    reason: Reason
    drifted: bool | None = None  # None: leave the Drifted condition as it was
    resolved_version: int | None = None
    previous_version: int | None = None
    history: HistoryEntry | None = None
    template_digest: str | None = None
    config_map: str | None = None
    owner: str | None = None
    synced: bool = False  # MLflow (and the projection) confirmed: update lastSyncTime
    keep_resolution: bool = False  # a failure: keep resolvedVersion & co. as they were
    extra: dict[str, Any] = field(default_factory=dict)
    prior: tuple[HistoryEntry, ...] = ()  # recorded before `history`
    applied_version: int | None = None  # pinned mode: the spec.version now carried out


def settle(
    status: PromptAliasStatus,
    outcome: Outcome,
    *,
    spec: PromptAliasSpec,
    generation: int,
    now: datetime,
) -> PromptAliasStatus:
    """The next status: conditions with kstatus semantics, resolution fields and bounded history."""
    conditions = kstatus_conditions(status.conditions, outcome, now=now, generation=generation)
    if outcome.drifted is not None:
        drift_message = (
            f"the MLflow alias points at version {outcome.resolved_version}, not spec.version {spec.version}"
            if outcome.drifted
            else "the MLflow alias points where the spec says"
        )
        drift_reason = Reason.DRIFT_DETECTED if outcome.drifted else Reason.SYNCED
        conditions = set_condition(
            conditions,
            make_condition(
                ConditionType.DRIFTED,
                outcome.drifted,
                drift_reason,
                drift_message,
                now=now,
                generation=generation,
            ),
        )
    update: dict[str, Any] = {
        "observed_generation": generation,
        "conditions": conditions,
        "owner": outcome.owner,
    }
    if not outcome.keep_resolution:
        update.update(
            resolved_version=outcome.resolved_version,
            previous_version=outcome.previous_version,
            uri=spec.uri,
            applied_version=outcome.applied_version,
            pending_move=None,
        )
        if outcome.template_digest is not None:
            update["template_digest"] = outcome.template_digest
        update["config_map_ref"] = ObjectReference(name=outcome.config_map) if outcome.config_map else None
    if outcome.synced:
        update["last_sync_time"] = now
    entries = [*outcome.prior, *([outcome.history] if outcome.history is not None else [])]
    if entries:
        history = [*status.history, *entries]
        update["history"] = history[-spec.history_limit :]
    elif len(status.history) > spec.history_limit:
        update["history"] = status.history[-spec.history_limit :]
    return status.model_copy(update=update)


def settled_from_plan(
    plan: AliasPlan,
    spec: PromptAliasSpec,
    *,
    digest: str | None,
    config_map: str | None,
    owner: str | None = None,
) -> Outcome:
    """The outcome of a plan whose writes all succeeded."""
    if plan.alias_missing:
        kept = f"; pods keep version {plan.resolved_version}" if plan.resolved_version is not None else ""
        message = (
            f"alias {spec.alias!r} of prompt {spec.prompt!r} does not exist in MLflow; the operator "
            f"follows it and never creates it (set it in MLflow, or set spec.version){kept}"
        )
        outcome = Outcome(ready=False, reason=Reason.ALIAS_NOT_FOUND, message=message)
    elif plan.drifted:
        where = f"version {plan.resolved_version}" if plan.resolved_version is not None else "nothing"
        message = (
            f"alias was moved outside Git and points at {where}, not {spec.version}; driftPolicy is "
            "Report, so it is left there"
        )
        outcome = Outcome(ready=False, reason=Reason.DRIFT_DETECTED, message=message, drifted=True)
    else:
        following = spec.version is None
        message = (
            f"following MLflow: {spec.uri} is version {plan.resolved_version}"
            if following
            else f"{spec.uri} points at version {plan.resolved_version}"
        )
        drifted = None if following else False
        outcome = Outcome(ready=True, reason=Reason.SYNCED, message=message, drifted=drifted, owner=owner)
    if not plan.alias_missing:  # the alias is where the plan left it: spec.version carried out
        outcome = replace(outcome, applied_version=spec.version, synced=True)
    # Whatever the verdict, the status records where the plan left the alias and its projection.
    return replace(
        outcome,
        resolved_version=plan.resolved_version,
        previous_version=plan.previous_version,
        history=plan.history,
        prior=plan.prior,
        template_digest=digest,
        config_map=config_map,
    )
