"""What a finalizer does with the MLflow alias its resource leaves behind (pure; both finalizers).

A PromptAlias with `deletionPolicy: Delete` and a PromptExperiment (its candidate alias) follow one
rule, carried out by `alias_deleted` (handlers/aliases.py) and `experiment_deleted`
(handlers/experiments.py):

- `promptalias.io/abandon-alias: "true"` skips MLflow altogether (`abandoned`).
- The alias is deleted only if it is ours — no owner tag, or the tag names us — and it still points
  at our version: a newer move by someone else is theirs to keep (`plan_deletion`).
- Then our owner tag is released, so another resource may take the alias.
- A failure is retried with backoff while it is transient (MLflow down) and the deletion is younger
  than the timeout; otherwise the finalizer gives up at once and lets the resource go, the alias
  left as it is (`after_failure`). While it retries, Ready=False with reason Deleting, written by
  the same condition builder as every status write (`deleting_conditions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from promptalias.api.conditions import Condition, KstatusOutcome, Reason, kstatus_conditions
from promptalias.reconcile.backoff import backoff
from promptalias.reconcile.ownership import Owner
from promptalias.reconcile.timestamps import parse_timestamp
from promptalias.vocabulary import ABANDON_ANNOTATION

RETRY_CAP_S: Final = 30.0
"""The longest wait between two attempts of a finalizer."""


def abandoned(annotations: Mapping[str, str] | None) -> bool:
    """Whether the user asked to delete the resource without touching MLflow."""
    return (annotations or {}).get(ABANDON_ANNOTATION) == "true"


@dataclass(frozen=True)
class DeletionPlan:
    """The MLflow writes of a finalizer, in this order."""

    delete: bool
    """Delete the alias (ours, and still at our version)."""
    release: bool
    """Delete the owner tag: it names us."""
    kept: bool
    """The alias was to go but points elsewhere now (someone moved it): left as it is."""


def plan_deletion(
    *, wanted: bool, version: int | None, current: int | None, mark: Owner | None, me: Owner
) -> DeletionPlan:
    """What to write, from what MLflow shows.

    `wanted`: the resource asks for its alias to go (PromptAlias: deletionPolicy Delete with a
    spec.version; an experiment's candidate: always). `version`: the version we set it to (None:
    we never set it). `current`: where it points now. `mark`: the owner tag on the prompt.
    """
    ours = mark is None or mark == me
    at_ours = current is not None and current == version
    return DeletionPlan(
        delete=wanted and ours and at_ours,
        release=mark == me,
        kept=wanted and ours and not at_ours,
    )


@dataclass(frozen=True)
class Retry:
    """Try again after `delay` seconds (raise kopf.TemporaryError)."""

    delay: float


@dataclass(frozen=True)
class GiveUp:
    """Let the resource go with the alias left in MLflow; `elapsed` seconds were spent trying."""

    elapsed: float


def after_failure(*, transient: bool, elapsed: float, timeout_s: float, retry: int) -> Retry | GiveUp:
    """A failed attempt: retry a transient failure until the deletion timeout, give up otherwise."""
    if transient and elapsed < timeout_s:
        return Retry(delay=backoff(retry, cap=RETRY_CAP_S))
    return GiveUp(elapsed=elapsed)


def since_deletion(deletion_timestamp: object, now: datetime) -> float:
    """Seconds since the deletion was requested (0 when the timestamp is missing or unreadable)."""
    started = parse_timestamp(deletion_timestamp)
    if started is None:
        return 0.0
    return (now - started).total_seconds()


def deleting_conditions(
    conditions: Sequence[Condition], problem: str, *, retry: int, generation: int, now: datetime
) -> list[Condition]:
    """The conditions while a finalizer retries: Ready=False and Reconciling=True with reason
    Deleting, Stalled removed (the trouble is transient), other types (Drifted) kept as they were."""
    message = f"deleting: {problem} (attempt {retry + 1}); to skip MLflow: annotate {ABANDON_ANNOTATION}=true"
    deleting = KstatusOutcome(
        ready=False,
        reason=Reason.DELETING,
        message=message,
        reconciling=True,
        reconciling_reason=Reason.DELETING,
    )
    return kstatus_conditions(conditions, deleting, now=now, generation=generation)


__all__ = [
    "RETRY_CAP_S",
    "DeletionPlan",
    "GiveUp",
    "Retry",
    "abandoned",
    "after_failure",
    "deleting_conditions",
    "plan_deletion",
    "since_deletion",
]
