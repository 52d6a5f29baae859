"""The status a PromptExperiment pass writes: kstatus conditions, the split and its history (pure).

`Outcome` is how a pass ended (handlers/experiment_pass.py builds it from the plans of
experiment_candidate.py and experiment_promotion.py, and the analysis hook may refine it); `settle`
turns it and the progress of the split (experiment.py) into the next status, with the conditions
from api/conditions.py's one builder, `kstatus_conditions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from promptalias.api.conditions import (
    ConditionStatus,
    ConditionType,
    KstatusOutcome,
    Reason,
    find_condition,
    kstatus_conditions,
)
from promptalias.api.experiment import (
    MAX_EXPERIMENT_HISTORY,
    ExperimentHistoryEntry,
    ExperimentPhase,
    PromptExperimentSpec,
    PromptExperimentStatus,
)
from promptalias.reconcile.experiment import Blocked, Progress


@dataclass(frozen=True)
class Outcome(KstatusOutcome):
    """How the pass ended; `settle` turns it (and the progress) into the next status."""

    keep_progress: bool = False  # a failure before anything took effect: keep phase/weight/step
    extra_history: tuple[ExperimentHistoryEntry, ...] = field(default_factory=tuple)


def ready_message(spec: PromptExperimentSpec, progress: Progress, baseline_alias: str | None) -> str:
    candidate = f"Candidate {spec.candidate.alias} -> version {spec.candidate.version}"
    if progress.phase == ExperimentPhase.PROMOTED:
        return f"{baseline_alias or 'the baseline alias'} now points at version {spec.candidate.version}"
    if progress.phase == ExperimentPhase.ABORTED:
        return "Candidate weight is 0 (aborted)"
    if progress.phase == ExperimentPhase.PAUSED and spec.suspend:
        return f"Suspended at {progress.weight}%: {candidate} receives {progress.weight}%"
    return f"{candidate} receives {progress.weight}%"


def settle(
    status: PromptExperimentStatus,
    progress: Progress,
    outcome: Outcome,
    *,
    generation: int,
    now: datetime,
) -> PromptExperimentStatus:
    """The next status: kstatus conditions (Ready; Reconciling and Stalled only while True), the
    split, and the history (bounded, oldest dropped)."""
    conditions = kstatus_conditions(status.conditions, outcome, now=now, generation=generation)
    update: dict[str, Any] = {"observed_generation": generation, "conditions": conditions}
    history = list(status.history)
    if not outcome.keep_progress:
        update.update(phase=progress.phase, current_weight=progress.weight, current_step=progress.step)
        history.extend(progress.history)
    history.extend(outcome.extra_history)
    update["history"] = history[-MAX_EXPERIMENT_HISTORY:]
    return status.model_copy(update=update)


def reconciling_reason(status: PromptExperimentStatus) -> str | None:
    """The reason of the stored Reconciling condition, if it is True."""
    found = find_condition(status.conditions, ConditionType.RECONCILING)
    return found.reason if found is not None and found.status == ConditionStatus.TRUE else None


def stalled(blocked: Blocked) -> Outcome:
    """A pass stopped by a problem retrying cannot fix: Stalled, the split and the phase kept."""
    return Outcome(
        ready=False, reason=str(blocked.reason), message=blocked.message, stalled=True, keep_progress=True
    )


def unavailable(problem: str, delay: float) -> Outcome:
    """A pass stopped by transient trouble (MLflow or the apiserver): Reconciling, retried."""
    return Outcome(
        ready=False,
        reason=str(Reason.REGISTRY_UNAVAILABLE),
        message=f"{problem}; retrying in {delay:.0f}s (the current split stays)",
        reconciling=True,
        keep_progress=True,
    )


@dataclass(frozen=True)
class Terminal:
    """A Promoted or Aborted experiment: the outcome, and a Warning for a request that no longer applies."""

    outcome: Outcome
    warning: tuple[str, str] | None = None  # (reason, message)


def terminal(
    spec: PromptExperimentSpec, status: PromptExperimentStatus, progress: Progress, *, promote_requested: bool
) -> Terminal:
    """The outcome of a pass over a finished experiment (it only takes the split away)."""
    warning = None
    if promote_requested and progress.phase == ExperimentPhase.ABORTED:
        warning = (
            "PromoteIgnored",
            "the experiment was aborted; a promotion no longer applies. Create a new experiment, "
            f"or set spec.version: {spec.candidate.version} on PromptAlias {spec.baseline.name}",
        )
    message = ready_message(spec, progress, None)
    old_ready = status.condition(ConditionType.READY)
    if not progress.history and old_ready is not None and old_ready.status == ConditionStatus.TRUE:
        message = old_ready.message  # unchanged since it finished: keep the words it finished with
    return Terminal(Outcome(ready=True, reason=str(Reason.SYNCED), message=message), warning)


def synced(message: str, reconciling: str | None) -> Outcome:
    """A pass that carried out its plans: Ready, and Reconciling while a promotion is under way."""
    return Outcome(
        ready=True,
        reason=str(Reason.SYNCED),
        message=message,
        reconciling=reconciling is not None,
        reconciling_reason=str(reconciling) if reconciling is not None else None,
    )


def with_history(outcome: Outcome, entries: tuple[ExperimentHistoryEntry, ...]) -> Outcome:
    """The outcome with the history entries the pass's actions made (candidate moves, promotion)."""
    return replace(outcome, extra_history=entries)


__all__ = [
    "Outcome",
    "Terminal",
    "ready_message",
    "reconciling_reason",
    "settle",
    "stalled",
    "synced",
    "terminal",
    "unavailable",
    "with_history",
]
