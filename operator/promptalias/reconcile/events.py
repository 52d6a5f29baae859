"""Which Kubernetes Events a pass posts, from the status it started with and how it ended (pure).

Events tell people what happened, once: every history entry the pass records (a move, a step) is a
Normal Event; a Ready condition that turns false, or says something new while false, is a Warning;
a recovery to Ready with a new reason is a Normal Event. A pass that changes nothing posts nothing,
however often it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from promptalias.api.conditions import ConditionType, find_condition
from promptalias.api.experiment import PromptExperimentStatus
from promptalias.api.promptalias import PromptAliasStatus
from promptalias.reconcile import alias, experiment_status
from promptalias.reconcile.experiment import Progress


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" or "Warning"
    reason: str
    message: str


def alias_events(old: PromptAliasStatus, outcome: alias.Outcome) -> list[Event]:
    """The Events of a PromptAlias pass: its history entries, then a change of Ready."""
    entries = (*outcome.prior, *([outcome.history] if outcome.history is not None else []))
    events = [Event("Normal", str(entry.reason), entry.message or "") for entry in entries]
    previous = find_condition(old.conditions, ConditionType.READY)
    if previous is None or previous.reason != outcome.reason or previous.message != outcome.message:
        if not outcome.ready:
            events.append(Event("Warning", str(outcome.reason), outcome.message))
        elif previous is not None and previous.reason != outcome.reason:
            events.append(Event("Normal", str(outcome.reason), outcome.message))
    return events


def experiment_events(
    old: PromptExperimentStatus,
    new: PromptExperimentStatus,
    outcome: experiment_status.Outcome,
    progress: Progress,
    warnings: Sequence[tuple[str, str]] = (),
) -> list[Event]:
    """The Events of a PromptExperiment pass: the history it wrote, its `warnings` (reason,
    message), then a Ready that is false and says something new."""
    written = (() if outcome.keep_progress else progress.history) + outcome.extra_history
    events = [Event("Normal", entry.reason, entry.message or "") for entry in written]
    events.extend(Event("Warning", reason, message) for reason, message in warnings)
    before = old.condition("Ready")
    after = new.condition("Ready")
    if (
        after is not None
        and not outcome.ready
        and (before is None or before.reason != after.reason or before.message != after.message)
    ):
        events.append(Event("Warning", after.reason, after.message))
    return events


__all__ = ["Event", "alias_events", "experiment_events"]
