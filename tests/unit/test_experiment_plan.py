"""What an experiment pass decides before it writes: validation, the candidate alias plan and the
meaning of each promotion step (reconcile/experiment_candidate.py, experiment_promotion.py,
experiment_status.py) — every branch, no cluster, no MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from experiment_kit import baseline, spec
from promptalias.api.conditions import KstatusOutcome, Reason, kstatus_conditions
from promptalias.api.experiment import ExperimentPhase, PromptExperimentStatus
from promptalias.handlers.experiment_split import ExperimentState
from promptalias.reconcile.audit import parse_audit_tag
from promptalias.reconcile.experiment import Baseline, ExperimentReason, HistoryReason, Progress
from promptalias.reconcile.experiment_candidate import (
    CandidatePlan,
    baseline_missing,
    check_baseline,
    check_claim,
    plan_candidate,
    split_held,
)
from promptalias.reconcile.experiment_index import ExperimentEntry
from promptalias.reconcile.experiment_promotion import PromotionPlan, PromotionStep, plan_promotion
from promptalias.reconcile.experiment_status import stalled, synced, terminal, unavailable
from promptalias.reconcile.ownership import Owner

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ME = Owner("c1", "billing", "promptexperiment/parser-ab")
OTHER = Owner("c2", "billing", "parser")
RUNNING = Progress(phase=ExperimentPhase.COMPLETED, weight=50, step=None)
PROMOTING = replace(RUNNING, promote=True)


STARTED = PromptExperimentStatus(phase=ExperimentPhase.COMPLETED, current_weight=50)
NEW = PromptExperimentStatus()

# ---- validation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Validation:
    """A baseline and an experiment, and why `check_baseline` refuses them (None: it does not)."""

    name: str
    expected: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # overrides of `spec()`
    status: PromptExperimentStatus = field(default_factory=lambda: NEW)
    progress: Progress = RUNNING
    base: dict[str, Any] = field(default_factory=dict)  # overrides of `baseline()`


OWN_ALIAS: dict[str, Any] = {"candidate": {"alias": "production", "version": 4}}
AT_CANDIDATE: dict[str, Any] = {"version": 4, "resolved_version": 4}

VALIDATION = [
    Validation("a valid experiment"),
    Validation(
        "the candidate alias is the baseline's own", ExperimentReason.INVALID_CANDIDATE, spec=OWN_ALIAS
    ),
    Validation(
        "the baseline already serves the candidate version (pinned)",
        ExperimentReason.INVALID_CANDIDATE,
        base=AT_CANDIDATE,
    ),
    Validation(
        "the baseline already serves the candidate version (following MLflow)",
        ExperimentReason.INVALID_CANDIDATE,
        base={"version": None, "resolved_version": 4},
    ),
    Validation(
        "resolved at the candidate but pinned elsewhere: a change under way, valid",
        base={"version": 5, "resolved_version": 4},
    ),
    Validation(
        "once started, the baseline reaching the candidate is a promotion, not an error",
        status=STARTED,
        base=AT_CANDIDATE,
    ),
    Validation(
        "a promotion requested before the start is not refused", progress=PROMOTING, base=AT_CANDIDATE
    ),
    Validation(
        "the baseline is not projected: clients cannot see the split",
        ExperimentReason.PROJECTION_DISABLED,
        status=STARTED,
        base={"projection_enabled": False},
    ),
    Validation(
        "the own-alias check comes before the projection check",
        ExperimentReason.INVALID_CANDIDATE,
        spec=OWN_ALIAS,
        status=STARTED,
        base={"projection_enabled": False},
    ),
]


@pytest.mark.parametrize("case", VALIDATION, ids=lambda case: case.name)
def test_check_baseline(case: Validation) -> None:
    problem = check_baseline(spec(**case.spec), case.status, case.progress, baseline(**case.base))
    assert (problem.reason if problem is not None else None) == case.expected


def test_invalid_candidate_messages_say_what_to_do() -> None:
    own = check_baseline(spec(candidate={"alias": "production", "version": 4}), NEW, RUNNING, baseline())
    assert own is not None
    assert own.message == (
        "the candidate alias 'production' is the baseline's own alias; choose another alias "
        "(e.g. experimental-parser)"
    )
    same = check_baseline(spec(), NEW, RUNNING, baseline(version=None, resolved_version=4))
    assert same is not None
    assert same.message == (
        "the baseline production already serves version 4: nothing to compare; choose another "
        "candidate version"
    )


def test_split_and_baseline_problems() -> None:
    held = split_held("billing/older", "parser-production")
    assert held.reason == Reason.CONFLICT
    assert held.message.startswith("PromptExperiment billing/older (older) already splits the traffic of")
    missing = baseline_missing("billing", "parser-production")
    assert missing.reason == ExperimentReason.BASELINE_NOT_FOUND
    assert "PromptAlias billing/parser-production does not exist" in missing.message


@pytest.mark.parametrize(
    ("holder", "refusal", "expected"),
    [
        (None, None, None),
        ("billing/pa", None, Reason.CONFLICT),
        (None, "no writePrompts pattern", Reason.NOT_AUTHORIZED),
        ("billing/pa", "no writePrompts pattern", Reason.CONFLICT),  # the claim is named first
    ],
)
def test_check_claim(holder: str | None, refusal: str | None, expected: str | None) -> None:
    problem = check_claim(spec(), "invoice-parser", holder=holder, refusal=refusal)
    assert (problem.reason if problem is not None else None) == expected
    if refusal is not None and holder is None:
        assert problem is not None
        assert problem.message == refusal


# ---- the candidate alias ---------------------------------------------------------------------------


def candidate_plan(
    *,
    prompt_found: bool = True,
    version_found: bool = True,
    current: int | None = None,
    mark: Owner | None = None,
) -> CandidatePlan:
    """`plan_candidate` for `spec()` (candidate v4) from what MLflow shows."""
    return plan_candidate(
        spec(),
        RUNNING,
        prompt="invoice-parser",
        tracking_uri="http://mlflow:5000",
        prompt_found=prompt_found,
        version_found=version_found,
        current=current,
        mark=mark,
        me=ME,
        now=NOW,
    )


@dataclass(frozen=True)
class Candidate:
    """What MLflow shows of the candidate alias, and the plan's writes (or why it is blocked)."""

    name: str
    prompt_found: bool = True
    version_found: bool = True
    current: int | None = None
    mark: Owner | None = None
    blocked: str | None = None
    claim: bool = False
    write: int | None = None


CANDIDATE = [
    Candidate("first pass: claim, then point the alias", claim=True, write=4),
    Candidate("moved elsewhere, ours: point it back, no new claim", current=2, mark=ME, write=4),
    Candidate("unmarked but elsewhere: claim and point", current=2, claim=True, write=4),
    Candidate("already there and ours: nothing to write", current=4, mark=ME),
    Candidate("already there, unmarked: nothing to write (no claim without a write)", current=4),
    Candidate("another owner's tag", current=4, mark=OTHER, blocked=Reason.OWNED_ELSEWHERE),
    Candidate("no such prompt", prompt_found=False, version_found=False, blocked=Reason.VERSION_NOT_FOUND),
    Candidate("no such version", version_found=False, blocked=Reason.VERSION_NOT_FOUND),
    Candidate(
        "another owner wins over a missing version",
        version_found=False,
        mark=OTHER,
        blocked=Reason.OWNED_ELSEWHERE,
    ),
]


@pytest.mark.parametrize("case", CANDIDATE, ids=lambda case: case.name)
def test_plan_candidate(case: Candidate) -> None:
    plan = candidate_plan(
        prompt_found=case.prompt_found, version_found=case.version_found, current=case.current, mark=case.mark
    )
    assert (plan.blocked.reason if plan.blocked is not None else None) == case.blocked
    assert (plan.claim, plan.write) == (case.claim, case.write)
    writes = case.write is not None
    assert (plan.audit is not None, plan.history is not None) == (writes, writes)


def test_a_candidate_write_is_audited_and_recorded() -> None:
    plan = candidate_plan(current=2, mark=ME)
    assert plan.audit is not None
    key, value = plan.audit
    assert key == "promptalias.io/moved.experimental-parser"
    assert parse_audit_tag(value) == {"by": str(ME), "at": "2026-11-25T12:00:00Z", "replaced": 2}
    assert plan.history is not None
    assert (plan.history.reason, plan.history.actor) == (HistoryReason.CANDIDATE_SET, "promptalias-operator")
    assert plan.history.message == "MLflow alias experimental-parser moved from version 2 to version 4"


def test_a_missing_prompt_names_the_registry() -> None:
    plan = candidate_plan(prompt_found=False, version_found=False)
    assert plan.blocked is not None
    assert plan.blocked.message == "prompt 'invoice-parser' does not exist in MLflow (http://mlflow:5000)"


# ---- promotion -------------------------------------------------------------------------------------


def reconciling(reason: str) -> PromptExperimentStatus:
    busy = KstatusOutcome(
        ready=True, reason="Synced", message="m", reconciling=True, reconciling_reason=reason
    )
    conditions = kstatus_conditions([], busy, now=NOW, generation=1)
    return STARTED.model_copy(update={"conditions": conditions})


GIT = "Argo CD (Application argocd/billing)"


def promote(
    status: PromptExperimentStatus,
    progress: Progress,
    base: Baseline,
    *,
    current: int | None = 3,
    actor: str | None = "alice",
    refusal: str | None = None,
) -> PromotionPlan:
    """`plan_promotion` for `spec()` (candidate v4); `current`: where the baseline's MLflow alias is."""
    return plan_promotion(
        spec(), status, progress, base, actor=actor, current=current, me=ME, now=NOW, refusal=refusal
    )


@dataclass(frozen=True)
class Promotion:
    """A promotion's inputs, then what the step writes and reports."""

    name: str
    status: PromptExperimentStatus = field(default_factory=lambda: STARTED)
    progress: Progress = PROMOTING
    base: dict[str, Any] = field(default_factory=dict)  # overrides of `baseline()`
    current: int = 3  # the baseline's MLflow alias
    refusal: str | None = None
    step: PromotionStep | None = None
    reason: str | None = None  # Reconciling while the promotion is under way
    patch_spec: int | None = None
    move_alias: int | None = None
    entries: int = 0  # history entries written by this pass
    warns: bool = False
    blocked: bool = False


FOLLOWS: dict[str, Any] = {"version": None}

PROMOTION = [
    Promotion("no promotion", progress=RUNNING),
    Promotion(
        "pinned: patch the spec",
        step=PromotionStep.PATCH_SPEC,
        reason=ExperimentReason.PROMOTING,
        patch_spec=4,
        entries=1,
    ),
    Promotion(
        "pinned, already promoting: patch again, no second entry",
        status=reconciling(ExperimentReason.PROMOTING),
        step=PromotionStep.PATCH_SPEC,
        reason=ExperimentReason.PROMOTING,
        patch_spec=4,
    ),
    Promotion(
        "spec patched: wait for the baseline to resolve it",
        status=reconciling(ExperimentReason.PROMOTING),
        base={"version": 4},
        step=PromotionStep.WAIT,
        reason=ExperimentReason.PROMOTING,
    ),
    Promotion(
        "changed in Git without a request: wait, recorded once",
        progress=RUNNING,
        base={"version": 4},
        step=PromotionStep.WAIT,
        reason=ExperimentReason.PROMOTING,
        entries=1,
    ),
    Promotion(
        "following MLflow: move the alias",
        base=FOLLOWS,
        step=PromotionStep.MOVE_ALIAS,
        reason=ExperimentReason.PROMOTING,
        move_alias=4,
        entries=1,
    ),
    Promotion(
        "following MLflow, alias already moved: no second write",
        status=reconciling(ExperimentReason.PROMOTING),
        base=FOLLOWS,
        current=4,
        step=PromotionStep.MOVE_ALIAS,
        reason=ExperimentReason.PROMOTING,
    ),
    Promotion(
        "following MLflow without authority: refused, nothing written",
        base=FOLLOWS,
        refusal="alias 'production' is managed by someone else",
        step=PromotionStep.MOVE_ALIAS,
        blocked=True,
    ),
    Promotion(
        "GitOps: report the Git change, once",
        base={"gitops": GIT},
        step=PromotionStep.REPORT_GIT,
        reason=ExperimentReason.PROMOTION_PENDING,
        entries=1,
        warns=True,
    ),
    Promotion(
        "GitOps, already reported: no second Warning",
        status=reconciling(ExperimentReason.PROMOTION_PENDING),
        base={"gitops": GIT},
        step=PromotionStep.REPORT_GIT,
        reason=ExperimentReason.PROMOTION_PENDING,
    ),
    Promotion(
        "the baseline serves the candidate: done",
        progress=RUNNING,
        base={"version": 4, "resolved_version": 4},
        current=4,
        step=PromotionStep.DONE,
    ),
]


@pytest.mark.parametrize("case", PROMOTION, ids=lambda case: case.name)
def test_plan_promotion(case: Promotion) -> None:
    plan = promote(
        case.status, case.progress, baseline(**case.base), current=case.current, refusal=case.refusal
    )
    assert plan.step == case.step
    if not case.blocked:
        assert plan.reconciling == case.reason
    assert (plan.patch_spec, plan.move_alias) == (case.patch_spec, case.move_alias)
    assert len(plan.history) == case.entries
    assert (plan.warning is not None) == case.warns
    assert (plan.blocked is not None) == case.blocked
    assert (plan.audit is not None) == (case.move_alias is not None)
    assert plan.poke_baseline == (case.step == PromotionStep.MOVE_ALIAS and not case.blocked)
    if case.blocked:
        assert plan.blocked is not None
        assert (plan.blocked.reason, plan.blocked.message) == (Reason.NOT_AUTHORIZED, case.refusal)


def test_promotion_messages_and_actors() -> None:
    done = promote(
        STARTED, RUNNING, baseline(version=4, resolved_version=4, spec_actor="argocd"), current=4, actor=None
    )
    assert done.progress.phase == ExperimentPhase.PROMOTED
    assert done.progress.history[-1].actor == "argocd"  # no request: whoever set spec.version
    assert done.message == "production now points at version 4"
    asked = promote(STARTED, PROMOTING, baseline(version=None, resolved_version=4), current=4)
    assert (asked.step, asked.progress.history[-1].actor) == (PromotionStep.DONE, "alice")
    patch = promote(STARTED, PROMOTING, baseline())
    assert patch.message == "promoting: moving production of PromptAlias parser-production to version 4"
    (entry,) = patch.history
    assert (entry.reason, entry.actor) == (HistoryReason.PROMOTION_REQUESTED, "alice")
    assert entry.message == (
        "promotion of version 4 to production requested: "
        "spec.version of PromptAlias parser-production set to 4"
    )
    git = promote(STARTED, PROMOTING, baseline(gitops=GIT))
    assert git.warning == git.message
    assert "set `spec.version: 4` on PromptAlias parser-production in Git" in git.message
    assert git.history[0].message is not None
    assert git.history[0].message.endswith("requested: waiting for the Git change")


# ---- outcomes --------------------------------------------------------------------------------------


def test_outcomes_of_a_pass() -> None:
    from promptalias.reconcile.experiment import Blocked

    held = stalled(Blocked(Reason.CONFLICT, "held"))
    assert (held.ready, held.stalled, held.keep_progress, held.reason) == (False, True, True, "Conflict")
    down = unavailable("MLflow down", 4.0)
    assert (down.ready, down.reconciling, down.keep_progress) == (False, True, True)
    assert down.message == "MLflow down; retrying in 4s (the current split stays)"
    assert synced("m", None).reconciling is False
    busy = synced("m", ExperimentReason.PROMOTING)
    assert (busy.reconciling, busy.reconciling_reason) == (True, "Promoting")


def test_a_finished_experiment_keeps_its_words_and_ignores_a_late_promotion() -> None:
    aborted = Progress(phase=ExperimentPhase.ABORTED, weight=0, step=None)
    status = PromptExperimentStatus(
        phase=ExperimentPhase.ABORTED,
        conditions=kstatus_conditions(
            [], KstatusOutcome(ready=True, reason="Synced", message="said then"), now=NOW, generation=1
        ),
    )
    done = terminal(spec(), status, aborted, promote_requested=True)
    assert done.outcome.message == "said then"
    assert done.warning is not None
    assert done.warning[0] == "PromoteIgnored"
    quiet = terminal(spec(), status, aborted, promote_requested=False)
    assert quiet.warning is None


# ---- one experiment per baseline: the oldest running one (reconcile.ownership.winner) ---------------


def entry(
    uid: str, name: str, age_s: int, *, baseline: str = "parser-production", **flags: bool
) -> ExperimentEntry:
    return ExperimentEntry(
        uid=uid,
        namespace="billing",
        name=name,
        baseline=baseline,
        created=NOW - timedelta(seconds=age_s),
        terminal=flags.get("terminal", False),
        deleting=flags.get("deleting", False),
    )


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([], None),
        ([entry("a", "one", 10)], "a"),
        ([entry("a", "one", 10), entry("b", "two", 20)], "b"),  # the older
        ([entry("a", "one", 10), entry("b", "two", 20, terminal=True)], "a"),  # finished: not running
        ([entry("a", "one", 10), entry("b", "two", 20, deleting=True)], "a"),
        ([entry("b", "b-name", 10), entry("a", "a-name", 10)], "a"),  # same age: by name
        ([entry("a", "one", 10, baseline="other")], None),
    ],
)
def test_holder_is_the_oldest_running_experiment(
    entries: list[ExperimentEntry], expected: str | None
) -> None:
    state = ExperimentState(entries={e.uid: e for e in entries})
    found = state.holder("billing", "parser-production")
    assert (found.uid if found is not None else None) == expected
    assert state.holder("elsewhere", "parser-production") is None


def test_baseline_of_reads_the_baseline_body() -> None:
    from promptalias.api.promptalias import PromptAlias
    from promptalias.reconcile.experiment_candidate import baseline_of

    body: dict[str, Any] = {
        "apiVersion": "promptalias.io/v1alpha1",
        "kind": "PromptAlias",
        "metadata": {
            "name": "parser-production",
            "namespace": "billing",
            "labels": {"argocd.argoproj.io/instance": "billing"},
            "managedFields": [
                {
                    "manager": "argocd-controller",
                    "operation": "Apply",
                    "fieldsV1": {"f:spec": {"f:version": {}}},
                }
            ],
        },
        "spec": {
            "registryRef": {"name": "mlflow"},
            "prompt": "invoice-parser",
            "alias": "production",
            "version": 3,
        },
        "status": {"resolvedVersion": 3},
    }
    found = baseline_of("billing", "parser-production", PromptAlias.from_body(body), body["metadata"])
    assert (found.prompt, found.alias, found.version, found.resolved_version) == (
        "invoice-parser",
        "production",
        3,
        3,
    )
    assert found.projection_enabled
    assert found.gitops is not None
    assert "Argo CD" in found.gitops
    assert found.spec_actor == "argocd-controller"
