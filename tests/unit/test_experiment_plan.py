"""What an experiment pass decides before it writes: validation, the candidate alias plan and the
meaning of each promotion step (reconcile/experiment_candidate.py, experiment_promotion.py,
experiment_status.py) — every branch, no cluster, no MLflow."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promptalias.api.conditions import KstatusOutcome, Reason, kstatus_conditions
from promptalias.api.experiment import ExperimentPhase, PromptExperimentSpec, PromptExperimentStatus
from promptalias.handlers.experiment_split import ExperimentEntry, ExperimentState
from promptalias.reconcile.audit import parse_audit_tag
from promptalias.reconcile.experiment import Baseline, ExperimentReason, HistoryReason, Progress
from promptalias.reconcile.experiment_candidate import (
    baseline_missing,
    check_baseline,
    check_claim,
    plan_candidate,
    split_held,
)
from promptalias.reconcile.experiment_promotion import PromotionStep, plan_promotion
from promptalias.reconcile.experiment_status import stalled, synced, terminal, unavailable
from promptalias.reconcile.ownership import Owner

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ME = Owner("c1", "billing", "promptexperiment/parser-ab")
OTHER = Owner("c2", "billing", "parser")
RUNNING = Progress(phase=ExperimentPhase.COMPLETED, weight=50, step=None)
PROMOTING = replace(RUNNING, promote=True)


def spec(**extra: Any) -> PromptExperimentSpec:
    body: dict[str, Any] = {
        "baseline": {"name": "parser-production"},
        "candidate": {"alias": "experimental-parser", "version": 4},
        "weight": 50,
    }
    body.update(extra)
    return PromptExperimentSpec.model_validate(body)


def baseline(**extra: Any) -> Baseline:
    values: dict[str, Any] = {
        "namespace": "billing",
        "name": "parser-production",
        "prompt": "invoice-parser",
        "alias": "production",
        "version": 3,
        "resolved_version": 3,
    }
    values.update(extra)
    return Baseline(**values)


STARTED = PromptExperimentStatus(phase=ExperimentPhase.COMPLETED, current_weight=50)
NEW = PromptExperimentStatus()

# ---- validation ------------------------------------------------------------------------------------

# (name, spec overrides, stored status, progress, baseline overrides, expected reason or None)
VALIDATION = [
    ("a valid experiment", {}, NEW, RUNNING, {}, None),
    (
        "the candidate alias is the baseline's own",
        {"candidate": {"alias": "production", "version": 4}},
        NEW,
        RUNNING,
        {},
        ExperimentReason.INVALID_CANDIDATE,
    ),
    (
        "the baseline already serves the candidate version (pinned)",
        {},
        NEW,
        RUNNING,
        {"version": 4, "resolved_version": 4},
        ExperimentReason.INVALID_CANDIDATE,
    ),
    (
        "the baseline already serves the candidate version (following MLflow)",
        {},
        NEW,
        RUNNING,
        {"version": None, "resolved_version": 4},
        ExperimentReason.INVALID_CANDIDATE,
    ),
    (
        "resolved at the candidate but pinned elsewhere: a change under way, valid",
        {},
        NEW,
        RUNNING,
        {"version": 5, "resolved_version": 4},
        None,
    ),
    (
        "once started, the baseline reaching the candidate is a promotion, not an error",
        {},
        STARTED,
        RUNNING,
        {"version": 4, "resolved_version": 4},
        None,
    ),
    (
        "a promotion requested before the start is not refused",
        {},
        NEW,
        PROMOTING,
        {"version": 4, "resolved_version": 4},
        None,
    ),
    (
        "the baseline is not projected: clients cannot see the split",
        {},
        STARTED,
        RUNNING,
        {"projection_enabled": False},
        ExperimentReason.PROJECTION_DISABLED,
    ),
    (
        "the own-alias check comes before the projection check",
        {"candidate": {"alias": "production", "version": 4}},
        STARTED,
        RUNNING,
        {"projection_enabled": False},
        ExperimentReason.INVALID_CANDIDATE,
    ),
]


@pytest.mark.parametrize(
    ("overrides", "status", "progress", "base", "expected"),
    [case[1:] for case in VALIDATION],
    ids=[case[0] for case in VALIDATION],
)
def test_check_baseline(
    overrides: dict[str, Any],
    status: PromptExperimentStatus,
    progress: Progress,
    base: dict[str, Any],
    expected: str | None,
) -> None:
    problem = check_baseline(spec(**overrides), status, progress, baseline(**base))
    assert (problem.reason if problem is not None else None) == expected


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

# (name, prompt found, version found, current, mark, expected blocked reason, claim, write)
CANDIDATE = [
    ("first pass: claim, then point the alias", True, True, None, None, None, True, 4),
    ("moved elsewhere, ours: point it back, no new claim", True, True, 2, ME, None, False, 4),
    ("unmarked but elsewhere: claim and point", True, True, 2, None, None, True, 4),
    ("already there and ours: nothing to write", True, True, 4, ME, None, False, None),
    (
        "already there, unmarked: nothing to write (no claim without a write)",
        True,
        True,
        4,
        None,
        None,
        False,
        None,
    ),
    ("another owner's tag", True, True, 4, OTHER, Reason.OWNED_ELSEWHERE, False, None),
    ("no such prompt", False, False, None, None, Reason.VERSION_NOT_FOUND, False, None),
    ("no such version", True, False, None, None, Reason.VERSION_NOT_FOUND, False, None),
    (
        "another owner wins over a missing version",
        True,
        False,
        None,
        OTHER,
        Reason.OWNED_ELSEWHERE,
        False,
        None,
    ),
]


@pytest.mark.parametrize(
    ("prompt_found", "version_found", "current", "mark", "blocked", "claim", "write"),
    [case[1:] for case in CANDIDATE],
    ids=[case[0] for case in CANDIDATE],
)
def test_plan_candidate(
    prompt_found: bool,
    version_found: bool,
    current: int | None,
    mark: Owner | None,
    blocked: str | None,
    claim: bool,
    write: int | None,
) -> None:
    plan = plan_candidate(
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
    assert (plan.blocked.reason if plan.blocked is not None else None) == blocked
    assert (plan.claim, plan.write) == (claim, write)
    assert (plan.audit is not None, plan.history is not None) == (write is not None, write is not None)


def test_a_candidate_write_is_audited_and_recorded() -> None:
    plan = plan_candidate(
        spec(),
        RUNNING,
        prompt="invoice-parser",
        tracking_uri="http://mlflow:5000",
        prompt_found=True,
        version_found=True,
        current=2,
        mark=ME,
        me=ME,
        now=NOW,
    )
    assert plan.audit is not None
    key, value = plan.audit
    assert key == "promptalias.io/moved.experimental-parser"
    assert parse_audit_tag(value) == {"by": str(ME), "at": "2026-11-25T12:00:00Z", "replaced": 2}
    assert plan.history is not None
    assert (plan.history.reason, plan.history.actor) == (HistoryReason.CANDIDATE_SET, "promptalias-operator")
    assert plan.history.message == "MLflow alias experimental-parser moved from version 2 to version 4"


def test_a_missing_prompt_names_the_registry() -> None:
    plan = plan_candidate(
        spec(),
        RUNNING,
        prompt="invoice-parser",
        tracking_uri="http://mlflow:5000",
        prompt_found=False,
        version_found=False,
        current=None,
        mark=None,
        me=ME,
        now=NOW,
    )
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

# (name, stored status, progress, baseline overrides, MLflow baseline alias, refusal,
#  expected step, reconciling reason, patch_spec, move_alias, history entries, warning?, blocked?)
PROMOTION = [
    ("no promotion", STARTED, RUNNING, {}, 3, None, None, None, None, None, 0, False, False),
    (
        "pinned: patch the spec",
        STARTED,
        PROMOTING,
        {},
        3,
        None,
        PromotionStep.PATCH_SPEC,
        ExperimentReason.PROMOTING,
        4,
        None,
        1,
        False,
        False,
    ),
    (
        "pinned, already promoting: patch again, no second entry",
        reconciling(ExperimentReason.PROMOTING),
        PROMOTING,
        {},
        3,
        None,
        PromotionStep.PATCH_SPEC,
        ExperimentReason.PROMOTING,
        4,
        None,
        0,
        False,
        False,
    ),
    (
        "spec patched: wait for the baseline to resolve it",
        reconciling(ExperimentReason.PROMOTING),
        PROMOTING,
        {"version": 4},
        3,
        None,
        PromotionStep.WAIT,
        ExperimentReason.PROMOTING,
        None,
        None,
        0,
        False,
        False,
    ),
    (
        "changed in Git without a request: wait, recorded once",
        STARTED,
        RUNNING,
        {"version": 4},
        3,
        None,
        PromotionStep.WAIT,
        ExperimentReason.PROMOTING,
        None,
        None,
        1,
        False,
        False,
    ),
    (
        "following MLflow: move the alias",
        STARTED,
        PROMOTING,
        {"version": None},
        3,
        None,
        PromotionStep.MOVE_ALIAS,
        ExperimentReason.PROMOTING,
        None,
        4,
        1,
        False,
        False,
    ),
    (
        "following MLflow, alias already moved: no second write",
        reconciling(ExperimentReason.PROMOTING),
        PROMOTING,
        {"version": None},
        4,
        None,
        PromotionStep.MOVE_ALIAS,
        ExperimentReason.PROMOTING,
        None,
        None,
        0,
        False,
        False,
    ),
    (
        "following MLflow without authority: refused, nothing written",
        STARTED,
        PROMOTING,
        {"version": None},
        3,
        "alias 'production' is managed by someone else",
        PromotionStep.MOVE_ALIAS,
        None,
        None,
        None,
        0,
        False,
        True,
    ),
    (
        "GitOps: report the Git change, once",
        STARTED,
        PROMOTING,
        {"gitops": GIT},
        3,
        None,
        PromotionStep.REPORT_GIT,
        ExperimentReason.PROMOTION_PENDING,
        None,
        None,
        1,
        True,
        False,
    ),
    (
        "GitOps, already reported: no second Warning",
        reconciling(ExperimentReason.PROMOTION_PENDING),
        PROMOTING,
        {"gitops": GIT},
        3,
        None,
        PromotionStep.REPORT_GIT,
        ExperimentReason.PROMOTION_PENDING,
        None,
        None,
        0,
        False,
        False,
    ),
    (
        "the baseline serves the candidate: done",
        STARTED,
        RUNNING,
        {"version": 4, "resolved_version": 4},
        4,
        None,
        PromotionStep.DONE,
        None,
        None,
        None,
        0,
        False,
        False,
    ),
]


@pytest.mark.parametrize(
    (
        "status",
        "progress",
        "base",
        "current",
        "refusal",
        "step",
        "reason",
        "patch_spec",
        "move_alias",
        "entries",
        "warns",
        "blocked",
    ),
    [case[1:] for case in PROMOTION],
    ids=[case[0] for case in PROMOTION],
)
def test_plan_promotion(
    status: PromptExperimentStatus,
    progress: Progress,
    base: dict[str, Any],
    current: int | None,
    refusal: str | None,
    step: PromotionStep | None,
    reason: str | None,
    patch_spec: int | None,
    move_alias: int | None,
    entries: int,
    warns: bool,
    blocked: bool,
) -> None:
    plan = plan_promotion(
        spec(),
        status,
        progress,
        baseline(**base),
        actor="alice",
        current=current,
        me=ME,
        now=NOW,
        refusal=refusal,
    )
    assert plan.step == step
    assert (plan.reconciling if not blocked else None) == (reason if not blocked else None)
    assert (plan.patch_spec, plan.move_alias) == (patch_spec, move_alias)
    assert len(plan.history) == entries
    assert (plan.warning is not None) == warns
    assert (plan.blocked is not None) == blocked
    assert (plan.audit is not None) == (move_alias is not None)
    assert plan.poke_baseline == (step == PromotionStep.MOVE_ALIAS and not blocked)
    if blocked:
        assert plan.blocked is not None
        assert (plan.blocked.reason, plan.blocked.message) == (Reason.NOT_AUTHORIZED, refusal)


def test_promotion_messages_and_actors() -> None:
    done = plan_promotion(
        spec(), STARTED, RUNNING, baseline(version=4, resolved_version=4, spec_actor="argocd"),
        actor=None, current=4, me=ME, now=NOW,
    )  # fmt: skip
    assert done.progress.phase == ExperimentPhase.PROMOTED
    assert done.progress.history[-1].actor == "argocd"  # no request: whoever set spec.version
    assert done.message == "production now points at version 4"
    asked = plan_promotion(
        spec(), STARTED, PROMOTING, baseline(version=None, resolved_version=4),
        actor="alice", current=4, me=ME, now=NOW,
    )  # fmt: skip
    assert (asked.step, asked.progress.history[-1].actor) == (PromotionStep.DONE, "alice")
    patch = plan_promotion(spec(), STARTED, PROMOTING, baseline(), actor="alice", current=3, me=ME, now=NOW)
    assert patch.message == "promoting: moving production of PromptAlias parser-production to version 4"
    (entry,) = patch.history
    assert (entry.reason, entry.actor) == (HistoryReason.PROMOTION_REQUESTED, "alice")
    assert entry.message == (
        "promotion of version 4 to production requested: "
        "spec.version of PromptAlias parser-production set to 4"
    )
    git = plan_promotion(
        spec(), STARTED, PROMOTING, baseline(gitops=GIT), actor="alice", current=3, me=ME, now=NOW
    )
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
