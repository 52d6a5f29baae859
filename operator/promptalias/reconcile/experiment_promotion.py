"""What each step of a PromptExperiment's promotion means, and what the pass writes for it (pure).

A promotion moves the baseline PromptAlias to the candidate version by the baseline's own rules:
a pinned baseline gets its spec.version patched (its history then names the promoter), a baseline
that follows MLflow gets its MLflow alias moved, and a GitOps-managed baseline is never patched —
the user is told which change to make in Git. The experiment is Promoted once the baseline serves
the candidate version. `promotion` says which step is next; `plan_promotion` what that step writes
(the baseline's spec, the MLflow alias and its audit tag), reports (message, Reconciling reason,
history entry, Warning) and refuses (no authority over the baseline alias).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from promptalias.api.conditions import Reason
from promptalias.api.experiment import (
    ExperimentHistoryEntry,
    ExperimentPhase,
    PromptExperimentSpec,
    PromptExperimentStatus,
)
from promptalias.reconcile.audit import audit_tag
from promptalias.reconcile.experiment import (
    Baseline,
    Blocked,
    ExperimentReason,
    HistoryReason,
    Progress,
)
from promptalias.reconcile.experiment_status import ready_message, reconciling_reason
from promptalias.reconcile.ownership import Owner
from promptalias.vocabulary import PROMOTE_ANNOTATION, RESUME_ANNOTATION


class PromotionStep(StrEnum):
    """What a promotion needs next."""

    DONE = "Done"  # the baseline serves the candidate version
    PATCH_SPEC = "PatchSpec"  # patch the baseline's spec.version
    MOVE_ALIAS = "MoveAlias"  # follow mode: move the MLflow alias (the baseline follows it)
    REPORT_GIT = "ReportGit"  # GitOps-managed: tell the user which Git change to make
    WAIT = "Wait"  # the change was made; wait for the baseline to resolve it


def promotion(baseline: Baseline, candidate_version: int, *, requested: bool) -> PromotionStep | None:
    """The next promotion step, or None when no promotion is under way.

    A baseline whose spec already names the candidate version (e.g. changed in Git) is a promotion
    even without a request: once it resolves, the experiment is Promoted.
    """
    at_candidate = baseline.resolved_version == candidate_version
    pinned_to_candidate = baseline.version == candidate_version
    if at_candidate and (pinned_to_candidate or (baseline.version is None and requested)):
        return PromotionStep.DONE
    if pinned_to_candidate:
        return PromotionStep.WAIT
    if not requested:
        return None
    if baseline.gitops is not None:
        return PromotionStep.REPORT_GIT
    if baseline.version is None:
        return PromotionStep.MOVE_ALIAS
    return PromotionStep.PATCH_SPEC


def promoted(
    progress: Progress, now: datetime, baseline: Baseline, version: int, actor: str | None
) -> Progress:
    """The progress once the baseline serves the candidate version: Promoted, weight 0."""
    done = Progress(
        phase=ExperimentPhase.PROMOTED,
        weight=0,
        step=progress.step,
        consumed=progress.consumed | {PROMOTE_ANNOTATION, RESUME_ANNOTATION},
    )
    entry = done.entry(
        HistoryReason.PROMOTED, now, f"promoted: {baseline.alias} now points at version {version}", actor
    )
    return replace(done, history=(*progress.history, entry))


def promotion_requested_entry(
    progress: Progress, now: datetime, baseline: Baseline, version: int, actor: str | None, how: str
) -> ExperimentHistoryEntry:
    message = f"promotion of version {version} to {baseline.alias} requested: {how}"
    return progress.entry(HistoryReason.PROMOTION_REQUESTED, now, message, actor)


def git_change(namespace: str, baseline: str, version: int, manager: str) -> str:
    """The message that tells a GitOps user which change promotes the candidate."""
    return (
        f"the baseline PromptAlias {namespace}/{baseline} is managed by {manager}, so the operator does "
        f"not patch it: set `spec.version: {version}` on PromptAlias {baseline} in Git. The split stays "
        "in place until the change is synced; the experiment then becomes Promoted."
    )


@dataclass(frozen=True)
class PromotionPlan:
    """What the pass does about a promotion (nothing at all when `step` is None)."""

    step: PromotionStep | None
    progress: Progress
    """The progress after the step: Promoted (weight 0) once DONE, else as it was."""
    message: str
    """The Ready message."""
    reconciling: str | None = None
    """Reconciling=True with this reason while the promotion is under way."""
    history: tuple[ExperimentHistoryEntry, ...] = ()
    """PromotionRequested, once per kind of wait (the stored Reconciling reason tells)."""
    patch_spec: int | None = None
    """PATCH_SPEC: set the baseline's spec.version to this (field manager promptalias-experiment)."""
    move_alias: int | None = None
    """MOVE_ALIAS: set the baseline's MLflow alias to this version (it is elsewhere now)."""
    audit: tuple[str, str] | None = None
    """With move_alias: the version tag recording the move."""
    poke_baseline: bool = False
    """Wake the baseline's worker with a fresh read (it follows the alias we moved)."""
    warning: str | None = None
    """REPORT_GIT, the first time: a PromotionPending Warning on the experiment and the baseline."""
    blocked: Blocked | None = None
    """MOVE_ALIAS refused: no authority over the baseline alias (NotAuthorized; MLflow unchanged)."""


def plan_promotion(
    spec: PromptExperimentSpec,
    status: PromptExperimentStatus,
    progress: Progress,
    baseline: Baseline,
    *,
    actor: str | None,
    current: int | None,
    me: Owner,
    now: datetime,
    refusal: str | None = None,
) -> PromotionPlan:
    """The plan for the next promotion step.

    `actor`: who asked for the promotion (None: nobody, e.g. the spec was changed in Git).
    `current`: where the baseline's MLflow alias points now. `refusal`: why the operator may not
    move the baseline alias (tenancy or its owner tag), asked by the caller for MOVE_ALIAS only.
    """
    version = spec.candidate.version
    step = promotion(baseline, version, requested=progress.promote)
    message = ready_message(spec, progress, baseline.alias)
    if step is None:
        return PromotionPlan(step=None, progress=progress, message=message)
    if step == PromotionStep.DONE:
        done = promoted(progress, now, baseline, version, actor or baseline.spec_actor)
        return PromotionPlan(step=step, progress=done, message=ready_message(spec, done, baseline.alias))
    already = reconciling_reason(status)
    if step == PromotionStep.REPORT_GIT:
        assert baseline.gitops is not None
        pending = git_change(baseline.namespace, baseline.name, version, baseline.gitops)
        first = already != ExperimentReason.PROMOTION_PENDING
        return PromotionPlan(
            step=step,
            progress=progress,
            message=pending,
            reconciling=ExperimentReason.PROMOTION_PENDING,
            history=(
                (
                    promotion_requested_entry(
                        progress, now, baseline, version, actor, "waiting for the Git change"
                    ),
                )
                if first
                else ()
            ),
            warning=pending if first else None,
        )
    if step == PromotionStep.MOVE_ALIAS and refusal is not None:
        return PromotionPlan(
            step=step, progress=progress, message=message, blocked=Blocked(Reason.NOT_AUTHORIZED, refusal)
        )
    moving = f"promoting: moving {baseline.alias} of PromptAlias {baseline.name} to version {version}"
    plan = PromotionPlan(step=step, progress=progress, message=moving, reconciling=ExperimentReason.PROMOTING)
    if step == PromotionStep.PATCH_SPEC:
        how = f"spec.version of PromptAlias {baseline.name} set to {version}"
        plan = replace(plan, patch_spec=version)
    elif step == PromotionStep.MOVE_ALIAS:
        how = f"MLflow alias {baseline.alias} moved to {version} (the baseline follows MLflow)"
        plan = replace(plan, poke_baseline=True)
        if current != version:
            tag = audit_tag(baseline.alias, by=str(me), at=now, replaced=current)
            plan = replace(plan, move_alias=version, audit=tag)
    else:
        how = f"spec.version of PromptAlias {baseline.name} is {version}"
    if already != ExperimentReason.PROMOTING:
        plan = replace(
            plan, history=(promotion_requested_entry(progress, now, baseline, version, actor, how),)
        )
    return plan


__all__ = [
    "PromotionPlan",
    "PromotionStep",
    "git_change",
    "plan_promotion",
    "promoted",
    "promotion",
    "promotion_requested_entry",
]
