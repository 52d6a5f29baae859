"""Pure experiment logic: the ramp, requests, promotion decisions, GitOps detection, status."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from experiment_kit import baseline, spec
from promptalias.api.experiment import ExperimentPhase, PromptExperimentSpec, PromptExperimentStatus
from promptalias.projection.render import render_projection
from promptalias.reconcile.audit import audit_tag, moved_tag_key, parse_audit_tag
from promptalias.reconcile.experiment import (
    ExperimentReason,
    HistoryReason,
    Progress,
    Requests,
    advance,
    read_requests,
    step_entered,
)
from promptalias.reconcile.experiment_candidate import projection_block
from promptalias.reconcile.experiment_promotion import PromotionStep, git_change, promoted, promotion
from promptalias.reconcile.experiment_status import Outcome, ready_message, settle
from promptalias.reconcile.managed_fields import annotation_actor
from promptalias.vocabulary import ABORT_ANNOTATION, PROMOTE_ANNOTATION, RESUME_ANNOTATION

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
NONE = Requests()


def run(
    s: PromptExperimentSpec,
    status: PromptExperimentStatus,
    now: datetime,
    requests: Requests = NONE,
) -> tuple[Progress, PromptExperimentStatus]:
    progress = advance(s, status, now=now, requests=requests)
    outcome = Outcome(ready=True, reason="Synced", message=ready_message(s, progress, "production"))
    return progress, settle(status, progress, outcome, generation=1, now=now)


def reasons(status: PromptExperimentStatus) -> list[str]:
    return [entry.reason for entry in status.history]


# ---- the ramp ------------------------------------------------------------------------------------


def test_without_steps_the_final_weight_applies_at_once() -> None:
    progress, status = run(spec(weight=10), PromptExperimentStatus(), T0)
    assert (progress.phase, progress.weight, progress.step) == (ExperimentPhase.COMPLETED, 10, None)
    assert progress.publishes
    assert progress.wake_after is None
    assert reasons(status) == ["Started"]
    assert status.history[0].message == "started: experimental-parser -> version 4 receives 10%"
    # A second pass changes nothing.
    again, same = run(spec(weight=10), status, T0 + timedelta(minutes=5))
    assert again.history == ()
    assert same.history == status.history


def test_steps_with_pauses_ramp_up_then_complete() -> None:
    s = spec(weight=50, steps=[{"weight": 10, "pause": "2s"}, {"weight": 25, "pause": "1m"}])
    progress, status = run(s, PromptExperimentStatus(), T0)
    assert (progress.phase, progress.weight, progress.step) == (ExperimentPhase.PROGRESSING, 10, 0)
    assert progress.wake_after == pytest.approx(2.0)
    # Not due yet: nothing changes, the wake-up shrinks.
    progress, status = run(s, status, T0 + timedelta(seconds=1.5))
    assert progress.history == ()
    assert progress.wake_after == pytest.approx(0.5)
    progress, status = run(s, status, T0 + timedelta(seconds=2))
    assert (progress.phase, progress.weight, progress.step) == (ExperimentPhase.PROGRESSING, 25, 1)
    assert progress.wake_after == pytest.approx(60.0)
    progress, status = run(s, status, T0 + timedelta(seconds=62))
    assert (progress.phase, progress.weight, progress.step) == (ExperimentPhase.COMPLETED, 50, 1)
    assert reasons(status) == ["Started", "StepAdvanced", "Completed"]
    assert [e.weight for e in status.history] == [10, 25, 50]
    assert status.current_weight == 50
    assert status.current_step == 1


def test_a_long_outage_takes_one_step_at_a_time() -> None:
    s = spec(weight=50, steps=[{"weight": 10, "pause": "1m"}, {"weight": 25, "pause": "1m"}])
    _, status = run(s, PromptExperimentStatus(), T0)
    progress, status = run(s, status, T0 + timedelta(hours=3))
    # The next step gets its full pause: the operator never jumps to 50% after being down.
    assert (progress.weight, progress.step) == (25, 1)
    assert progress.wake_after == pytest.approx(60.0)


def test_zero_pauses_run_through_in_one_pass() -> None:
    s = spec(weight=40, steps=[{"weight": 10, "pause": "0s"}, {"weight": 20, "pause": "0s"}])
    progress, status = run(s, PromptExperimentStatus(), T0)
    assert (progress.phase, progress.weight) == (ExperimentPhase.COMPLETED, 40)
    assert reasons(status) == ["Started", "StepAdvanced", "Completed"]


def test_a_step_without_pause_waits_for_resume() -> None:
    s = spec(weight=50, steps=[{"weight": 10}, {"weight": 25, "pause": "10s"}])
    progress, status = run(s, PromptExperimentStatus(), T0)
    assert (progress.phase, progress.weight, progress.step) == (ExperimentPhase.PAUSED, 10, 0)
    assert progress.wake_after is None
    progress, status = run(s, status, T0 + timedelta(hours=1))
    assert progress.phase == ExperimentPhase.PAUSED
    assert progress.history == ()
    # A resume for another step is stale: consumed, ignored.
    stale = Requests(resume="kubectl-annotate", resume_step=5)
    progress, status = run(s, status, T0 + timedelta(hours=1), stale)
    assert progress.step == 0
    assert progress.consumed == {RESUME_ANNOTATION}
    progress, status = run(
        s, status, T0 + timedelta(hours=2), Requests(resume="promptalias-cli", resume_step=0)
    )
    assert (progress.phase, progress.weight, progress.step) == (ExperimentPhase.PROGRESSING, 25, 1)
    assert progress.consumed == {RESUME_ANNOTATION}
    assert progress.wake_after == pytest.approx(10.0)
    # The same request seen again (annotation not yet removed) does not skip the next step.
    progress, status = run(s, status, T0 + timedelta(hours=2, seconds=1), Requests(resume="x", resume_step=0))
    assert progress.step == 1
    assert progress.history == ()


def test_suspend_pauses_and_resume_restarts_the_step_pause() -> None:
    s = spec(weight=50, steps=[{"weight": 10, "pause": "1m"}])
    _, status = run(s, PromptExperimentStatus(), T0)
    suspended = s.model_copy(update={"suspend": True})
    progress, status = run(suspended, status, T0 + timedelta(seconds=50))
    assert (progress.phase, progress.weight) == (ExperimentPhase.PAUSED, 10)
    assert ready_message(suspended, progress, "production").startswith("Suspended at 10%")
    progress, status = run(suspended, status, T0 + timedelta(minutes=10))
    assert progress.history == ()  # still suspended, nothing new
    progress, status = run(s, status, T0 + timedelta(minutes=20))
    assert (progress.phase, progress.weight) == (ExperimentPhase.PROGRESSING, 10)
    assert progress.wake_after == pytest.approx(60.0)  # the pause starts again
    assert reasons(status)[-2:] == ["Suspended", "Resumed"]
    progress, status = run(s, status, T0 + timedelta(minutes=21))
    assert (progress.phase, progress.weight) == (ExperimentPhase.COMPLETED, 50)


def test_suspended_before_start_publishes_nothing_until_resumed() -> None:
    s = spec(weight=20, suspend=True)
    progress, status = run(s, PromptExperimentStatus(), T0)
    assert (progress.phase, progress.weight, progress.step) == (ExperimentPhase.PAUSED, 0, None)
    assert not progress.publishes
    assert reasons(status) == ["Suspended"]
    progress, status = run(spec(weight=20), status, T0 + timedelta(seconds=5))
    assert (progress.phase, progress.weight) == (ExperimentPhase.COMPLETED, 20)
    assert reasons(status) == ["Suspended", "Started"]


def test_suspended_and_resumed_without_steps_stays_completed() -> None:
    _, status = run(spec(weight=30), PromptExperimentStatus(), T0)
    _, status = run(spec(weight=30, suspend=True), status, T0 + timedelta(seconds=1))
    progress, status = run(spec(weight=30), status, T0 + timedelta(seconds=2))
    assert (progress.phase, progress.weight) == (ExperimentPhase.COMPLETED, 30)
    assert reasons(status) == ["Started", "Suspended", "Resumed"]


def test_spec_edits_are_followed() -> None:
    _, status = run(spec(weight=10), PromptExperimentStatus(), T0)
    progress, status = run(spec(weight=30), status, T0 + timedelta(seconds=1))
    assert progress.weight == 30
    assert reasons(status)[-1] == "WeightChanged"
    assert status.history[-1].message == "the spec changed: weight 10% -> 30%"
    s = spec(weight=50, steps=[{"weight": 10, "pause": "1h"}, {"weight": 20, "pause": "1h"}])
    _, status = run(s, PromptExperimentStatus(), T0)
    shorter = spec(weight=50, steps=[{"weight": 5, "pause": "1h"}])
    progress, status = run(shorter, status, T0 + timedelta(seconds=1))
    assert (progress.weight, progress.step) == (5, 0)
    _, status = run(s, status, T0 + timedelta(seconds=2))
    _, status = run(s, status, T0 + timedelta(hours=1, seconds=3))
    assert status.current_step == 1
    progress, status = run(shorter, status, T0 + timedelta(hours=1, seconds=4))
    assert (progress.phase, progress.weight, progress.step) == (ExperimentPhase.COMPLETED, 50, 0)


def test_abort_sets_weight_zero_and_is_final() -> None:
    s = spec(weight=50, steps=[{"weight": 10, "pause": "1m"}])
    _, status = run(s, PromptExperimentStatus(), T0)
    progress, status = run(s, status, T0 + timedelta(seconds=5), Requests(abort="promptalias-cli"))
    assert (progress.phase, progress.weight) == (ExperimentPhase.ABORTED, 0)
    assert not progress.publishes
    assert progress.consumed == {ABORT_ANNOTATION}
    assert status.history[-1].actor == "promptalias-cli"
    assert ready_message(s, progress, "production") == "Candidate weight is 0 (aborted)"
    # Final: later requests are consumed and change nothing.
    later = Requests(promote="promptalias-cli", resume="x")
    progress, status2 = run(s, status, T0 + timedelta(minutes=5), later)
    assert progress.phase == ExperimentPhase.ABORTED
    assert progress.consumed == {PROMOTE_ANNOTATION, RESUME_ANNOTATION}
    assert status2.history == status.history


def test_abort_wins_over_promote_and_works_before_start() -> None:
    progress = advance(spec(), PromptExperimentStatus(), now=T0, requests=Requests(promote="a", abort="b"))
    assert progress.phase == ExperimentPhase.ABORTED
    assert progress.consumed == {PROMOTE_ANNOTATION, ABORT_ANNOTATION}


def test_a_promote_request_freezes_the_ramp() -> None:
    s = spec(weight=50, steps=[{"weight": 10, "pause": "1s"}])
    _, status = run(s, PromptExperimentStatus(), T0)
    progress = advance(s, status, now=T0 + timedelta(minutes=1), requests=Requests(promote="cli"))
    assert progress.promote
    assert (progress.phase, progress.weight) == (ExperimentPhase.PROGRESSING, 10)
    assert progress.consumed == frozenset()  # removed only once promoted


def test_step_entered_reads_the_history() -> None:
    s = spec(weight=50, steps=[{"weight": 10, "pause": "1m"}, {"weight": 20, "pause": "1m"}])
    _, status = run(s, PromptExperimentStatus(), T0)
    assert step_entered(status, 0, T0 + timedelta(hours=1)) == T0
    assert step_entered(PromptExperimentStatus(), 0, T0) == T0


def test_history_is_bounded() -> None:
    status = PromptExperimentStatus()
    for i in range(120):
        _, status = run(spec(weight=i % 2 + 1), status, T0 + timedelta(seconds=i))
    assert len(status.history) == 100
    assert status.history[-1].weight == 2


# ---- requests --------------------------------------------------------------------------------------


def managed(manager: str, key: str, time: str) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": "Update",
        "time": time,
        "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{key}": {}}}},
    }


def test_requests_and_their_actors() -> None:
    fields = [
        managed("kubectl-annotate", PROMOTE_ANNOTATION, "2026-01-01T00:00:00Z"),
        managed("promptalias-cli", PROMOTE_ANNOTATION, "2026-01-02T00:00:00Z"),
        {"manager": "argocd", "fieldsV1": {"f:spec": {}}},
    ]
    assert annotation_actor(fields, PROMOTE_ANNOTATION) == "promptalias-cli"
    assert annotation_actor(fields, ABORT_ANNOTATION) is None
    requests = read_requests({PROMOTE_ANNOTATION: "2026-01-02T00:00:00Z", RESUME_ANNOTATION: "2"}, fields)
    assert requests == Requests(promote="promptalias-cli", resume="unknown", resume_step=2)
    assert requests.present == {PROMOTE_ANNOTATION, RESUME_ANNOTATION}
    assert read_requests({RESUME_ANNOTATION: "true"}, None).resume_step is None
    assert read_requests({RESUME_ANNOTATION: "-3"}, None).resume_step is None
    assert read_requests(None, None) == Requests()


# ---- promotion -------------------------------------------------------------------------------------


def test_promotion_steps() -> None:
    assert promotion(baseline(), 4, requested=False) is None
    assert promotion(baseline(), 4, requested=True) == PromotionStep.PATCH_SPEC
    assert (
        promotion(baseline(gitops="Argo CD (Application a)"), 4, requested=True) == PromotionStep.REPORT_GIT
    )
    assert promotion(baseline(version=None), 4, requested=True) == PromotionStep.MOVE_ALIAS
    # The spec names the candidate (patched by us, or changed in Git): wait, then done.
    assert promotion(baseline(version=4), 4, requested=True) == PromotionStep.WAIT
    assert promotion(baseline(version=4), 4, requested=False) == PromotionStep.WAIT
    assert promotion(baseline(version=4, resolved_version=4), 4, requested=False) == PromotionStep.DONE
    assert promotion(baseline(version=None, resolved_version=4), 4, requested=True) == PromotionStep.DONE
    # Following MLflow, an alias that happens to reach the candidate is no promotion by itself.
    assert promotion(baseline(version=None, resolved_version=4), 4, requested=False) is None


def test_promoted_progress() -> None:
    s = spec(weight=20)
    progress, _ = run(s, PromptExperimentStatus(), T0)
    done = promoted(progress, T0, baseline(), 4, "promptalias-cli")
    assert (done.phase, done.weight, done.terminal, done.publishes) == (
        ExperimentPhase.PROMOTED,
        0,
        True,
        False,
    )
    assert done.history[-1].reason == HistoryReason.PROMOTED
    assert done.history[-1].message == "promoted: production now points at version 4"
    assert PROMOTE_ANNOTATION in done.consumed
    assert ready_message(s, done, "production") == "production now points at version 4"


def test_git_change_names_the_edit() -> None:
    text = git_change("billing", "parser-production", 4, "Argo CD (Application billing)")
    assert "set `spec.version: 4` on PromptAlias parser-production in Git" in text
    assert "Argo CD (Application billing)" in text


# ---- projection and status -------------------------------------------------------------------------


def test_projection_block_renders() -> None:
    block = projection_block(
        spec(routing_key="tenant"),
        10,
        template="v4 {{x}}",
        response_format={"type": "object"},
        model_config=None,
    )
    assert block == {
        "candidate": {
            "alias": "experimental-parser",
            "version": 4,
            "template": "v4 {{x}}",
            "response_format": {"type": "object"},
        },
        "weight": 10,
        "key": "tenant",
    }
    document = render_projection(
        name="invoice-parser",
        alias="production",
        version=3,
        template="v3",
        response_format=None,
        model_config=None,
        tags={},
        updated=T0,
        experiment=block,
    )
    assert document["experiment"]["candidate"]["uri"] == "prompts:/invoice-parser@experimental-parser"


def test_settle_conditions_follow_kstatus() -> None:
    s = spec()
    progress = advance(s, PromptExperimentStatus(), now=T0, requests=NONE)
    stalled = settle(
        PromptExperimentStatus(),
        progress,
        Outcome(ready=False, reason="VersionNotFound", message="no v4", stalled=True, keep_progress=True),
        generation=2,
        now=T0,
    )
    assert stalled.phase is None  # nothing took effect
    assert stalled.history == []
    assert {c.type: c.status for c in stalled.conditions} == {"Ready": "False", "Stalled": "True"}
    assert all(c.observed_generation == 2 for c in stalled.conditions)
    later = T0 + timedelta(minutes=1)
    ok = settle(
        stalled, progress, Outcome(ready=True, reason="Synced", message="fine"), generation=2, now=later
    )
    assert {c.type: c.status for c in ok.conditions} == {"Ready": "True"}
    assert ok.condition("Ready") is not None
    assert ok.phase == ExperimentPhase.COMPLETED
    pending = settle(
        ok,
        progress,
        Outcome(
            ready=True,
            reason="Synced",
            message="set spec.version in Git",
            reconciling=True,
            reconciling_reason=ExperimentReason.PROMOTION_PENDING,
        ),
        generation=2,
        now=later + timedelta(minutes=1),
    )
    reconciling = pending.condition("Reconciling")
    assert reconciling is not None
    assert reconciling.reason == "PromotionPending"
    ready = pending.condition("Ready")
    assert ready is not None
    assert ready.last_transition_time == later  # status did not flip
    # The wire form is what the CRD accepts (camelCase, no nulls).
    wire = pending.to_dict()
    assert wire["currentWeight"] == 50
    assert "currentStep" not in wire
    assert json.loads(json.dumps(wire, default=str))


# ---- audit tag ------------------------------------------------------------------------------------


def test_audit_tag() -> None:
    key, value = audit_tag("production", by="c1/billing/parser-production", at=T0, replaced=3)
    assert key == moved_tag_key("production") == "promptalias.io/moved.production"
    assert json.loads(value) == {
        "by": "c1/billing/parser-production",
        "at": "2026-11-25T10:00:00Z",
        "replaced": 3,
    }
    assert parse_audit_tag(value) == {
        "by": "c1/billing/parser-production",
        "at": "2026-11-25T10:00:00Z",
        "replaced": 3,
    }
    _, first = audit_tag("experimental-parser", by="c1/ns/promptexperiment/x", at=T0, replaced=None)
    assert json.loads(first)["replaced"] is None
    assert len(audit_tag("a", by="x" * 9000, at=T0, replaced=1)[1]) <= 5000
    assert parse_audit_tag(None) is None
    assert parse_audit_tag("not json") is None
    with pytest.raises(ValueError, match="timezone-aware"):
        audit_tag("a", by="x", at=datetime(2026, 1, 1), replaced=None)


def test_a_trimmed_history_does_not_restart_the_experiment() -> None:
    s = spec(weight=50, steps=[{"weight": 10, "pause": "1h"}])
    _, status = run(s, PromptExperimentStatus(), T0)
    status = status.model_copy(update={"history": []})  # the Started entry fell out of the 100
    progress, _ = run(s, status, T0 + timedelta(minutes=1))
    assert progress.history == ()
    assert (progress.phase, progress.weight, progress.step) == (ExperimentPhase.PROGRESSING, 10, 0)
