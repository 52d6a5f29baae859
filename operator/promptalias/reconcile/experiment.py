"""Where a PromptExperiment's split stands: requests, the ramp of weights, the baseline (pure, unit-tested).

An experiment gives a candidate alias (e.g. experimental-parser -> v4) a share of the traffic of a
baseline PromptAlias. The split travels in the baseline's projection; clients route by a stable hash
of a routing key. The lifecycle (docs/experiments.md):

    (new) --start--> Progressing --steps/pauses--> Completed --promote--> Promoted
      |                 |   ^                          |
      |              Paused (step without a pause      +--abort--> Aborted (weight 0)
      |               duration, or spec.suspend)
      +-- spec.suspend: Paused at weight 0 until resumed

Everything here is derived from the spec, the stored status and what was observed, so a crash
between two writes converges on the next pass: step start times are read back from the history,
requests (promote, abort, resume) are annotations removed only once they have taken effect.

The rest of the experiment's decisions sit beside this module, one concern each:
`experiment_candidate.py` (is the experiment valid; the candidate alias in MLflow; the split's block
in the projection), `experiment_promotion.py` (what each promotion step means) and
`experiment_status.py` (the status a pass writes). handlers/experiment_pass.py carries them out.

Over 400 lines on purpose: the ramp, the requests and the baseline read one status; the candidate,
promotion and status decisions are split out (experiment_candidate/promotion/status.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from promptalias.api.duration import parse_duration
from promptalias.api.experiment import (
    ExperimentHistoryEntry,
    ExperimentPhase,
    PromptExperimentSpec,
    PromptExperimentStatus,
)
from promptalias.reconcile.managed_fields import annotation_actor
from promptalias.vocabulary import ABORT_ANNOTATION, PROMOTE_ANNOTATION, RESUME_ANNOTATION

TERMINAL: Final = frozenset({ExperimentPhase.PROMOTED, ExperimentPhase.ABORTED})
# A step due within this many seconds is taken now rather than after another sleep.
_DUE_SLACK_S: Final = 0.001


class HistoryReason(StrEnum):
    """Reasons of `status.history` entries (and of the Events posted with them)."""

    STARTED = "Started"
    STEP_ADVANCED = "StepAdvanced"
    COMPLETED = "Completed"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    WEIGHT_CHANGED = "WeightChanged"
    CANDIDATE_SET = "CandidateSet"
    PROMOTION_REQUESTED = "PromotionRequested"
    PROMOTED = "Promoted"
    ABORTED = "Aborted"


class ExperimentReason(StrEnum):
    """Condition reasons specific to experiments (the shared ones are in api.conditions.Reason)."""

    BASELINE_NOT_FOUND = "BaselineNotFound"
    """Stalled: spec.baseline names no PromptAlias in this namespace. Create it or fix the name."""
    INVALID_CANDIDATE = "InvalidCandidate"
    """Stalled: the candidate alias is the baseline's own alias, or the candidate version is the
    version the baseline already serves (nothing to compare)."""
    PROJECTION_DISABLED = "ProjectionDisabled"
    """Stalled: the baseline has spec.projection.enabled=false, so clients cannot see the split."""
    PROMOTING = "Promoting"
    """Reconciling: the baseline PromptAlias is being moved to the candidate version."""
    PROMOTION_PENDING = "PromotionPending"
    """Reconciling: promotion was requested but the baseline is managed by GitOps (Argo CD, Flux,
    Helm); the message names the change to make in Git. The split stays until Git catches up."""


# ---- requests (annotations) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Requests:
    """One-shot requests read from the experiment's annotations; `None`: not requested."""

    promote: str | None = None  # the actor that asked (field manager), or "unknown"
    abort: str | None = None
    resume: str | None = None
    resume_step: int | None = None  # resume only if still at this step (idempotent); None: any

    @property
    def present(self) -> frozenset[str]:
        found = set()
        if self.promote is not None:
            found.add(PROMOTE_ANNOTATION)
        if self.abort is not None:
            found.add(ABORT_ANNOTATION)
        if self.resume is not None:
            found.add(RESUME_ANNOTATION)
        return frozenset(found)


def read_requests(
    annotations: Mapping[str, str] | None, managed_fields: Sequence[Mapping[str, Any]] | None
) -> Requests:
    """Requests from annotations. Values are free text (the CLI writes a timestamp), except resume,
    whose value may be the step index to leave (so a repeated request never skips two steps)."""
    annotations = annotations or {}

    def actor(key: str) -> str | None:
        if key not in annotations:
            return None
        return annotation_actor(managed_fields, key) or "unknown"

    resume_step: int | None = None
    raw = annotations.get(RESUME_ANNOTATION)
    if raw is not None:
        try:
            resume_step = int(str(raw).strip())
        except ValueError:
            resume_step = None
        if resume_step is not None and resume_step < 0:
            resume_step = None
    return Requests(
        promote=actor(PROMOTE_ANNOTATION),
        abort=actor(ABORT_ANNOTATION),
        resume=actor(RESUME_ANNOTATION),
        resume_step=resume_step,
    )


# ---- progress of the split ------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where the split stands after this pass."""

    phase: ExperimentPhase | None
    weight: int
    step: int | None
    history: tuple[ExperimentHistoryEntry, ...] = ()
    wake_after: float | None = None  # seconds until the next step is due
    promote: bool = False  # a promotion is requested and not yet done
    consumed: frozenset[str] = frozenset()  # request annotations that took effect (remove them)

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    @property
    def publishes(self) -> bool:
        """Whether the baseline's projection carries the split."""
        return self.phase is not None and not self.terminal and not (self.step is None and self.weight == 0)

    def entry(
        self, reason: HistoryReason, now: datetime, message: str, actor: str | None = None
    ) -> ExperimentHistoryEntry:
        """A history entry at this split (its phase, weight and step)."""
        return split_entry(
            reason, now, phase=self.phase, weight=self.weight, step=self.step, message=message, actor=actor
        )


def _seconds(now: datetime) -> datetime:
    return now.replace(microsecond=0)


def split_entry(
    reason: HistoryReason,
    now: datetime,
    *,
    phase: ExperimentPhase | None,
    weight: int,
    step: int | None,
    message: str,
    actor: str | None = None,
) -> ExperimentHistoryEntry:
    return ExperimentHistoryEntry(
        time=_seconds(now),
        reason=str(reason),
        phase=phase,
        weight=weight,
        step=step,
        actor=actor,
        message=message[:1024],
    )


def _last(status: PromptExperimentStatus, reasons: set[HistoryReason]) -> ExperimentHistoryEntry | None:
    wanted = {str(reason) for reason in reasons}
    return next((entry for entry in reversed(status.history) if entry.reason in wanted), None)


def _suspended(status: PromptExperimentStatus) -> bool:
    """Whether the stored status is paused because of spec.suspend (not at a step without pause)."""
    if status.phase != ExperimentPhase.PAUSED:
        return False
    last = _last(status, {HistoryReason.SUSPENDED, HistoryReason.RESUMED})
    return last is not None and last.reason == HistoryReason.SUSPENDED


def _started(status: PromptExperimentStatus) -> bool:
    """Whether the split ever started. The Started entry may have been trimmed from a long history,
    so the stored split counts too; only "suspended before it started" looks like not started."""
    if _last(status, {HistoryReason.STARTED}) is not None:
        return True
    if status.phase is None:
        return False
    if status.phase == ExperimentPhase.PAUSED:
        return status.current_step is not None or bool(status.current_weight)
    return True


def step_entered(status: PromptExperimentStatus, step: int, now: datetime) -> datetime:
    """When the current step began (or last resumed): its pause counts from there."""
    for entry in reversed(status.history):
        if entry.reason in (HistoryReason.STARTED, HistoryReason.STEP_ADVANCED) and entry.step == step:
            return entry.time
        if entry.reason == HistoryReason.RESUMED:
            return entry.time
    return now


def _step_weight(spec: PromptExperimentSpec, step: int) -> int:
    steps = spec.steps or []
    return steps[step].weight if step < len(steps) else spec.weight


class _Ramp:
    """Mutable scratch state of one `advance` call."""

    def __init__(self, status: PromptExperimentStatus) -> None:
        self.phase = status.phase
        self.weight = status.current_weight or 0
        self.step = status.current_step
        self.history: list[ExperimentHistoryEntry] = []
        self.wake_after: float | None = None
        self.consumed: set[str] = set()

    def record(self, reason: HistoryReason, now: datetime, message: str, actor: str | None = None) -> None:
        self.history.append(
            split_entry(
                reason,
                now,
                phase=self.phase,
                weight=self.weight,
                step=self.step,
                message=message,
                actor=actor,
            )
        )

    def result(self, *, promote: bool = False) -> Progress:
        return Progress(
            phase=self.phase,
            weight=self.weight,
            step=self.step,
            history=tuple(self.history),
            wake_after=self.wake_after,
            promote=promote,
            consumed=frozenset(self.consumed),
        )


def advance(
    spec: PromptExperimentSpec, status: PromptExperimentStatus, *, now: datetime, requests: Requests
) -> Progress:
    """The phase, weight and step after this pass, the history to append and when to look again.

    Promotion itself needs the baseline (see `promotion`); here a promote request only freezes the
    ramp. Abort wins over everything but a finished experiment.
    """
    ramp = _Ramp(status)
    candidate = f"{spec.candidate.alias} -> version {spec.candidate.version}"
    if ramp.phase in TERMINAL:
        ramp.consumed |= requests.present  # nothing left to do; the handler says why
        return ramp.result()
    if requests.abort is not None:
        ramp.phase, ramp.weight = ExperimentPhase.ABORTED, 0
        ramp.record(HistoryReason.ABORTED, now, f"aborted: {candidate} receives no traffic", requests.abort)
        ramp.consumed |= requests.present
        return ramp.result()
    promote = requests.promote is not None
    started = _started(status)
    if spec.suspend:
        if not _suspended(status):
            ramp.phase = ExperimentPhase.PAUSED
            where = f"at {ramp.weight}%" if started else "before it started"
            ramp.record(HistoryReason.SUSPENDED, now, f"spec.suspend: paused {where}")
        return ramp.result(promote=promote)
    if not started:
        _start(spec, ramp, now, candidate)
    elif _suspended(status):
        ramp.phase = ExperimentPhase.COMPLETED if ramp.step is None else ExperimentPhase.PROGRESSING
        ramp.record(HistoryReason.RESUMED, now, f"spec.suspend cleared: resumed at {ramp.weight}%")
        # The current step's pause starts again from the entry above.
        status = status.model_copy(update={"history": [*status.history, *ramp.history]})
    _sync_weight(spec, ramp, now)
    if promote:
        return ramp.result(promote=True)  # a promotion freezes the ramp; the handler moves the baseline
    _walk(spec, status, ramp, now, requests)
    return ramp.result()


def _start(spec: PromptExperimentSpec, ramp: _Ramp, now: datetime, candidate: str) -> None:
    if spec.steps:
        ramp.step, ramp.weight = 0, spec.steps[0].weight
        ramp.phase = ExperimentPhase.PROGRESSING
        ramp.record(
            HistoryReason.STARTED,
            now,
            f"started: {candidate} receives {ramp.weight}% (step 1/{len(spec.steps)})",
        )
    else:
        ramp.step, ramp.weight = None, spec.weight
        ramp.phase = ExperimentPhase.COMPLETED
        ramp.record(HistoryReason.STARTED, now, f"started: {candidate} receives {ramp.weight}%")


def _sync_weight(spec: PromptExperimentSpec, ramp: _Ramp, now: datetime) -> None:
    """Follow spec edits (weights, steps) made while the experiment runs."""
    steps = spec.steps or []
    if ramp.phase in (ExperimentPhase.PROGRESSING, ExperimentPhase.PAUSED) and (
        ramp.step is None or ramp.step >= len(steps)
    ):
        if ramp.step is not None or steps:
            ramp.step = len(steps) - 1 if steps else None
        ramp.phase = ExperimentPhase.COMPLETED
        if ramp.weight != spec.weight:
            ramp.weight = spec.weight
        ramp.record(HistoryReason.COMPLETED, now, f"the steps changed: final weight {spec.weight}% applied")
        return
    wanted = spec.weight if ramp.phase == ExperimentPhase.COMPLETED else _step_weight(spec, ramp.step or 0)
    if wanted != ramp.weight:
        before, ramp.weight = ramp.weight, wanted
        ramp.record(HistoryReason.WEIGHT_CHANGED, now, f"the spec changed: weight {before}% -> {wanted}%")


def _walk(
    spec: PromptExperimentSpec, status: PromptExperimentStatus, ramp: _Ramp, now: datetime, requests: Requests
) -> None:
    steps = spec.steps or []
    entered: datetime | None = None
    while ramp.phase in (ExperimentPhase.PROGRESSING, ExperimentPhase.PAUSED) and ramp.step is not None:
        step = ramp.step
        pause = steps[step].pause
        if pause is None:
            wanted = requests.resume is not None and requests.resume_step in (None, step)
            if not wanted:
                if requests.resume is not None:
                    ramp.consumed.add(RESUME_ANNOTATION)  # a stale resume (for another step)
                if ramp.phase != ExperimentPhase.PAUSED:
                    ramp.phase = ExperimentPhase.PAUSED
                return
            ramp.consumed.add(RESUME_ANNOTATION)
            requests = Requests(promote=requests.promote, abort=requests.abort)
            _next_step(spec, ramp, now, actor=None, why=f"resumed after step {step + 1}")
            entered = now
            continue
        if entered is None:
            entered = step_entered(status, step, now)
        due = entered + timedelta(seconds=parse_duration(pause))
        remaining = (due - now).total_seconds()
        if remaining > _DUE_SLACK_S:
            ramp.phase = ExperimentPhase.PROGRESSING
            ramp.wake_after = remaining
            if requests.resume is not None:
                ramp.consumed.add(RESUME_ANNOTATION)  # nothing to resume: the step has a timer
            return
        _next_step(spec, ramp, now, actor=None, why=f"pause {pause} of step {step + 1} elapsed")
        entered = now
    if requests.resume is not None:
        ramp.consumed.add(RESUME_ANNOTATION)


def _next_step(
    spec: PromptExperimentSpec, ramp: _Ramp, now: datetime, *, actor: str | None, why: str
) -> None:
    steps = spec.steps or []
    assert ramp.step is not None
    if ramp.step + 1 < len(steps):
        ramp.step += 1
        ramp.weight = steps[ramp.step].weight
        ramp.phase = ExperimentPhase.PROGRESSING
        ramp.record(
            HistoryReason.STEP_ADVANCED,
            now,
            f"{why}: candidate weight {ramp.weight}% (step {ramp.step + 1}/{len(steps)})",
            actor,
        )
        return
    ramp.weight = spec.weight
    ramp.phase = ExperimentPhase.COMPLETED
    ramp.record(HistoryReason.COMPLETED, now, f"{why}: final weight {spec.weight}% reached", actor)


# ---- the baseline ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """What the experiment needs to know about its baseline PromptAlias."""

    namespace: str
    name: str
    prompt: str
    alias: str
    version: int | None  # spec.version; None: follows MLflow
    resolved_version: int | None  # status.resolvedVersion
    projection_enabled: bool = True
    gitops: str | None = None  # gitops_manager(...) of the PromptAlias
    spec_actor: str | None = None  # who last set spec.version


@dataclass(frozen=True)
class Blocked:
    """A problem retrying cannot fix: the pass ends Stalled with this reason, the split as it was."""

    reason: str  # an ExperimentReason or an api.conditions.Reason
    message: str
