"""Whether a PromptExperiment can run, and what its candidate alias needs in MLflow (pure, table-tested).

Validation comes first, in the order the pass meets the facts: one experiment per baseline (the
oldest running one holds its split), the baseline must exist, the candidate must differ from it
(its own alias; a version the baseline does not already serve) and the baseline must be projected
(clients see the split only there). Then the candidate alias: no PromptAlias of this cluster may
claim it, the namespace needs authority to write it (tenancy), the prompt and the candidate version
must exist, and the alias must not carry another owner's tag. `plan_candidate` says what to write:
our owner tag when the alias is unmarked, the alias itself when it points elsewhere, and the audit
tag on the version (MLflow keeps no history of alias moves). Every failed check is `Blocked`: the
pass ends Stalled and the split stays as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from promptalias.api.conditions import Reason
from promptalias.api.experiment import (
    ExperimentHistoryEntry,
    PromptExperimentSpec,
    PromptExperimentStatus,
)
from promptalias.api.promptalias import PromptAlias
from promptalias.reconcile.audit import audit_tag
from promptalias.reconcile.experiment import (
    Baseline,
    Blocked,
    ExperimentReason,
    HistoryReason,
    Progress,
)
from promptalias.reconcile.gitops import gitops_manager
from promptalias.reconcile.managed_fields import version_actor
from promptalias.reconcile.ownership import Owner
from promptalias.vocabulary import OPERATOR_FIELD_MANAGER as OPERATOR_ACTOR

# ---- validation -----------------------------------------------------------------------------------


def baseline_of(namespace: str, name: str, pa: PromptAlias, meta: Mapping[str, Any]) -> Baseline:
    """What the experiment needs to know of its baseline PromptAlias (`meta`: its body's metadata)."""
    return Baseline(
        namespace=namespace,
        name=name,
        prompt=pa.spec.prompt,
        alias=pa.spec.alias,
        version=pa.spec.version,
        resolved_version=pa.status.resolved_version,
        projection_enabled=pa.spec.projection.enabled,
        gitops=gitops_manager(meta),
        spec_actor=version_actor(meta.get("managedFields")),
    )


def split_held(holder: str, baseline: str) -> Blocked:
    """Another experiment (`holder`, namespace/name, older) already splits this baseline's traffic."""
    return Blocked(
        Reason.CONFLICT,
        f"PromptExperiment {holder} (older) already splits the traffic of PromptAlias {baseline}; one "
        "experiment per baseline. Finish (promote or abort) or delete it; this one starts then.",
    )


def baseline_missing(namespace: str, baseline: str) -> Blocked:
    return Blocked(
        ExperimentReason.BASELINE_NOT_FOUND,
        f"PromptAlias {namespace}/{baseline} does not exist; create it or fix spec.baseline.name",
    )


def check_baseline(
    spec: PromptExperimentSpec, status: PromptExperimentStatus, progress: Progress, baseline: Baseline
) -> Blocked | None:
    """Why the experiment cannot run against this baseline (InvalidCandidate, ProjectionDisabled)."""
    if spec.candidate.alias == baseline.alias:
        return Blocked(
            ExperimentReason.INVALID_CANDIDATE,
            f"the candidate alias {spec.candidate.alias!r} is the baseline's own alias; choose another "
            "alias (e.g. experimental-parser)",
        )
    if (
        status.phase is None  # not started: once running, the baseline may reach it (a promotion)
        and not progress.promote
        and baseline.resolved_version == spec.candidate.version
        and baseline.version in (None, spec.candidate.version)
    ):
        return Blocked(
            ExperimentReason.INVALID_CANDIDATE,
            f"the baseline {baseline.alias} already serves version {spec.candidate.version}: nothing to "
            "compare; choose another candidate version",
        )
    if not baseline.projection_enabled:
        return Blocked(
            ExperimentReason.PROJECTION_DISABLED,
            f"PromptAlias {baseline.name} has spec.projection.enabled: false, so clients cannot see "
            "the split; enable the projection",
        )
    return None


def check_claim(
    spec: PromptExperimentSpec, prompt: str, *, holder: str | None, refusal: str | None
) -> Blocked | None:
    """Before MLflow is read: a PromptAlias of this cluster (`holder`, namespace/name) manages the
    candidate alias, or the namespace may not write it (`refusal`, from the tenancy rule)."""
    alias = spec.candidate.alias
    if holder is not None:
        return Blocked(
            Reason.CONFLICT,
            f"PromptAlias {holder} manages alias {alias!r} of prompt {prompt!r}; an experiment's "
            "candidate alias must be its own. Choose another candidate alias.",
        )
    if refusal is not None:
        return Blocked(Reason.NOT_AUTHORIZED, refusal)
    return None


# ---- the candidate alias in MLflow ----------------------------------------------------------------


@dataclass(frozen=True)
class CandidatePlan:
    """The MLflow writes for the candidate alias, in this order (none when `blocked`)."""

    blocked: Blocked | None = None
    claim: bool = False
    """Set our owner tag on the prompt first (the alias was unmarked)."""
    write: int | None = None
    """Point the candidate alias at this version."""
    audit: tuple[str, str] | None = None
    """With write: the version tag that records the move (key, value)."""
    history: ExperimentHistoryEntry | None = None
    """With write: the CandidateSet entry."""


def plan_candidate(
    spec: PromptExperimentSpec,
    progress: Progress,
    *,
    prompt: str,
    tracking_uri: str,
    prompt_found: bool,
    version_found: bool,
    current: int | None,
    mark: Owner | None,
    me: Owner,
    now: datetime,
) -> CandidatePlan:
    """What the candidate alias needs, from what MLflow shows: whether the prompt and the candidate
    version exist, where the alias points (`current`) and who marked it (`mark`)."""
    alias, version = spec.candidate.alias, spec.candidate.version
    if not prompt_found:
        return CandidatePlan(
            blocked=Blocked(
                Reason.VERSION_NOT_FOUND, f"prompt {prompt!r} does not exist in MLflow ({tracking_uri})"
            )
        )
    if mark is not None and mark != me:
        return CandidatePlan(
            blocked=Blocked(
                Reason.OWNED_ELSEWHERE,
                f"alias {alias!r} of prompt {prompt!r} is managed by {mark} (owner tag on the MLflow "
                "prompt); choose another candidate alias",
            )
        )
    if not version_found:
        return CandidatePlan(
            blocked=Blocked(
                Reason.VERSION_NOT_FOUND,
                f"version {version} of prompt {prompt} does not exist in MLflow; register it or fix "
                "spec.candidate.version",
            )
        )
    if current == version:
        return CandidatePlan()
    return CandidatePlan(
        claim=mark is None,
        write=version,
        audit=audit_tag(alias, by=str(me), at=now, replaced=current),
        history=candidate_set_entry(progress, now, alias, version, current),
    )


def candidate_set_entry(
    progress: Progress, now: datetime, alias: str, version: int, previous: int | None
) -> ExperimentHistoryEntry:
    moved = f"from version {previous} " if previous is not None else ""
    message = f"MLflow alias {alias} moved {moved}to version {version}"
    return progress.entry(HistoryReason.CANDIDATE_SET, now, message, OPERATOR_ACTOR)


# ---- the split in the baseline's projection ---------------------------------------------------


def projection_block(
    spec: PromptExperimentSpec,
    weight: int,
    *,
    template: str | list[dict[str, Any]],
    response_format: Mapping[str, Any] | None,
    model_config: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The `experiment` block for the baseline's projection (World.experiment_projection's shape)."""
    candidate: dict[str, Any] = {
        "alias": spec.candidate.alias,
        "version": spec.candidate.version,
        "template": template,
    }
    if response_format is not None:
        candidate["response_format"] = dict(response_format)
    if model_config is not None:
        candidate["model_config"] = dict(model_config)
    return {"candidate": candidate, "weight": weight, "key": spec.routing_key}


__all__ = [
    "CandidatePlan",
    "baseline_missing",
    "baseline_of",
    "candidate_set_entry",
    "check_baseline",
    "check_claim",
    "plan_candidate",
    "projection_block",
    "split_held",
]
