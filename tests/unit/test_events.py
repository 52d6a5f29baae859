"""Which Events a pass posts (reconcile/events.py): each history entry once, a change of Ready once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from promptalias.api.conditions import ConditionType, Reason, make_condition
from promptalias.api.experiment import ExperimentHistoryEntry, ExperimentPhase, PromptExperimentStatus
from promptalias.api.promptalias import HistoryEntry, HistoryReason, PromptAliasStatus
from promptalias.reconcile import alias, experiment_status
from promptalias.reconcile.events import Event, alias_events, experiment_events
from promptalias.reconcile.experiment import Progress

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def alias_status(
    ready: bool | None, reason: Reason = Reason.SYNCED, message: str = "in sync"
) -> PromptAliasStatus:
    if ready is None:
        return PromptAliasStatus()
    condition = make_condition(ConditionType.READY, ready, reason, message, now=NOW, generation=1)
    return PromptAliasStatus(conditions=[condition])


def move(version: int, reason: HistoryReason, message: str | None = None) -> HistoryEntry:
    return HistoryEntry(
        version=version, previous_version=version - 1, time=NOW, reason=reason, message=message
    )


SYNCED = alias.Outcome(ready=True, reason=Reason.SYNCED, message="in sync")
DOWN = alias.Outcome(
    ready=False, reason=Reason.REGISTRY_UNAVAILABLE, message="retrying in 5s", reconciling=True
)


@dataclass(frozen=True)
class AliasCase:
    name: str
    old: PromptAliasStatus
    outcome: alias.Outcome
    events: list[Event]


ALIAS_CASES = [
    AliasCase("steady: nothing", alias_status(True), SYNCED, []),
    AliasCase("first pass, ready: nothing to warn of", alias_status(None), SYNCED, []),
    AliasCase(
        "a move is told, with the prior ones first",
        alias_status(True),
        alias.Outcome(
            ready=True,
            reason=Reason.SYNCED,
            message="in sync",
            prior=(move(3, HistoryReason.OBSERVED, "moved in MLflow"),),
            history=move(2, HistoryReason.DRIFT_CORRECTED),
        ),
        [Event("Normal", "Observed", "moved in MLflow"), Event("Normal", "DriftCorrected", "")],
    ),
    AliasCase(
        "not ready: a Warning",
        alias_status(True),
        DOWN,
        [Event("Warning", "RegistryUnavailable", "retrying in 5s")],
    ),
    AliasCase("the same failure again: quiet", alias_status(False, DOWN.reason, DOWN.message), DOWN, []),
    AliasCase(
        "the same failure, a new message: told again",
        alias_status(False, DOWN.reason, "retrying in 2s"),
        DOWN,
        [Event("Warning", "RegistryUnavailable", "retrying in 5s")],
    ),
    AliasCase(
        "recovered: a Normal Event with the new reason",
        alias_status(False, DOWN.reason, DOWN.message),
        SYNCED,
        [Event("Normal", "Synced", "in sync")],
    ),
    AliasCase("ready with a new message only: quiet", alias_status(True, message="older words"), SYNCED, []),
]


@pytest.mark.parametrize("case", ALIAS_CASES, ids=lambda c: c.name)
def test_alias_events(case: AliasCase) -> None:
    assert alias_events(case.old, case.outcome) == case.events


def experiment(ready: bool | None, reason: str = "Synced", message: str = "50%") -> PromptExperimentStatus:
    if ready is None:
        return PromptExperimentStatus()
    condition = make_condition(ConditionType.READY, ready, reason, message, now=NOW, generation=1)
    return PromptExperimentStatus(conditions=[condition])


def step(reason: str) -> ExperimentHistoryEntry:
    return ExperimentHistoryEntry(time=NOW, reason=reason, weight=50, message=f"{reason}!")


RUNNING = Progress(ExperimentPhase.PROGRESSING, 50, 0, history=(step("StepAdvanced"),))


def test_experiment_events_tell_the_history_written_and_the_warnings() -> None:
    outcome = experiment_status.Outcome(
        ready=True, reason="Synced", message="50%", extra_history=(step("CandidateSet"),)
    )
    events = experiment_events(
        experiment(True), experiment(True), outcome, RUNNING, [("PromotionPending", "wait")]
    )
    assert events == [
        Event("Normal", "StepAdvanced", "StepAdvanced!"),
        Event("Normal", "CandidateSet", "CandidateSet!"),
        Event("Warning", "PromotionPending", "wait"),
    ]


def test_a_failed_pass_keeps_its_progress_unwritten_and_untold() -> None:
    failed = experiment_status.Outcome(ready=False, reason="Conflict", message="held", keep_progress=True)
    events = experiment_events(experiment(True), experiment(False, "Conflict", "held"), failed, RUNNING)
    assert events == [Event("Warning", "Conflict", "held")]
    # the same failure on the next pass: quiet
    assert (
        experiment_events(
            experiment(False, "Conflict", "held"), experiment(False, "Conflict", "held"), failed, RUNNING
        )
        == []
    )
