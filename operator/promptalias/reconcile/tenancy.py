"""Who may write which alias: write authority from the registry, and claims across namespaces (pure).

Reading (following an alias, projecting it) needs only the use of a registry. Every write the
operator makes for a tenant — pinning an alias (`spec.version`), `promptalias.io/rollback-to`,
`promptalias.io/takeover`, an experiment's candidate alias and its promotion — needs write
authority over the prompt, and the alias must not be held by another namespace:

- Authority comes from the registry the resource uses: a ClusterPromptRegistry condition that
  allows the namespace and has a `writePrompts` pattern matching the prompt (GRANTED, set by the
  cluster admin), or the namespace's own PromptRegistry, whose `writePrompts` defaults to every
  prompt (OWN: it serves only its namespace, with that namespace's credentials). Otherwise NONE.
- Every PromptAlias with authority is a claim on (endpoint, prompt, alias) — pinned or following:
  a team that follows an alias it moves in MLflow holds it as much as a team that pins it.
  Resources without authority are readers and never claim, so they cannot squat a name.
- The holder is the claim with the highest authority, then the oldest. Only the holder's
  namespace may write; inside it, the oldest writer rule (reconcile/ownership.py) still applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import IntEnum, StrEnum
from fnmatch import fnmatchcase

from promptalias.api.conditions import Reason
from promptalias.api.registry import ClusterPromptRegistrySpec, PromptRegistrySpec, RegistrySpec
from promptalias.reconcile.alias import Outcome
from promptalias.reconcile.ownership import Claim, Owner


class Authority(IntEnum):
    """How strongly a namespace may write a prompt through a registry (higher wins a claim)."""

    NONE = 0  # read and follow only
    OWN = 1  # the namespace's own PromptRegistry
    GRANTED = 2  # a ClusterPromptRegistry condition (the cluster admin)


class WriteAction(StrEnum):
    """The writes that need authority; the value reads after "will not"."""

    PIN = "set"
    ROLLBACK = "roll back"
    TAKEOVER = "take over"
    CANDIDATE = "set"
    PROMOTE = "promote into"


def matches(patterns: Iterable[str], prompt: str) -> bool:
    """Whether any glob pattern (fnmatch, case-sensitive) matches the prompt name."""
    return any(fnmatchcase(prompt, pattern) for pattern in patterns)


def write_authority(
    spec: RegistrySpec, namespace: str, labels: Mapping[str, str] | None, prompt: str
) -> Authority:
    """The authority `namespace` (with these labels; None: not known yet) has over `prompt`."""
    if isinstance(spec, ClusterPromptRegistrySpec):
        if labels is None:
            return Authority.NONE
        for condition in spec.conditions or ():
            if condition.allows(namespace, labels) and matches(condition.write_prompts or (), prompt):
                return Authority.GRANTED
        return Authority.NONE
    if not isinstance(spec, PromptRegistrySpec):
        return Authority.NONE
    if spec.write_prompts is None or matches(spec.write_prompts, prompt):
        return Authority.OWN
    return Authority.NONE


@dataclass(frozen=True)
class AliasClaim:
    """One PromptAlias on (endpoint, prompt, alias), with the authority its registry gives it."""

    namespace: str
    name: str
    uid: str
    created: datetime
    authority: Authority
    pinned: bool  # spec.version set; False: follow mode

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def holder(claims: Iterable[AliasClaim]) -> AliasClaim | None:
    """The claim that holds the alias: highest authority, then oldest (ties: namespace, name, uid).
    Claims without authority never hold."""
    contenders = [claim for claim in claims if claim.authority > Authority.NONE]
    if not contenders:
        return None
    return min(
        contenders,
        key=lambda claim: (-claim.authority, claim.created, claim.namespace, claim.name, claim.uid),
    )


@dataclass(frozen=True)
class Refusal:
    """Why a write is not allowed; `holder` names the resource that holds the alias, if any."""

    message: str
    holder: str | None = None


_NEEDS_WRITE: dict[Authority, str] = {
    Authority.GRANTED: "write access granted by a ClusterPromptRegistry",
    Authority.OWN: "write access from its namespace's own PromptRegistry",
}


def authorize_write(
    action: WriteAction,
    *,
    namespace: str,
    prompt: str,
    alias: str,
    registry: str,
    authority: Authority,
    claims: Sequence[AliasClaim],
) -> Refusal | None:
    """None when `namespace` may make this write to `alias` of `prompt`, else the refusal.

    `registry` names the registry object used ("ClusterPromptRegistry shared"), `authority` is the
    writer's own, `claims` are every PromptAlias on the same endpoint, prompt and alias (the writer's
    own included, when it is a PromptAlias).
    """
    what = f"alias {alias!r} of prompt {prompt!r}"
    if authority == Authority.NONE:
        return Refusal(
            f"{registry} gives namespace {namespace} no write access to prompt {prompt!r} (no writePrompts "
            f"pattern matches it), so this resource will not {action} {what}; MLflow is unchanged. Ask the "
            "registry's admin for a writePrompts pattern (spec.conditions[].writePrompts of a "
            "ClusterPromptRegistry, spec.writePrompts of a PromptRegistry), or only follow the alias."
        )
    found = holder(claims)
    if found is None or found.namespace == namespace:
        return None
    why = _NEEDS_WRITE[found.authority] if found.authority > authority else "it claimed the alias first"
    mode = "pins" if found.pinned else "follows"
    return Refusal(
        f"{what} is held by namespace {found.namespace}: PromptAlias {found.ref} {mode} it with {why}. "
        f"This resource will not {action} the alias; MLflow is unchanged. The alias passes on when that "
        "PromptAlias is deleted; otherwise use another alias.",
        holder=found.ref,
    )


def same_namespace(claims: Iterable[Claim], namespace: str) -> list[Claim]:
    """The writers the oldest-writer rule still arbitrates once `namespace` may write: its own.
    Writers elsewhere are refused by `authorize_write` (lower authority, younger, or none), so they
    must not put this one in Conflict."""
    return [claim for claim in claims if claim.namespace == namespace]


def mark_refusal(
    mark: Owner | None, allowed: Iterable[Owner], *, action: WriteAction, prompt: str, alias: str
) -> Refusal | None:
    """Refuse a write to an alias whose MLflow owner tag names someone not in `allowed`."""
    if mark is None or mark in set(allowed):
        return None
    return Refusal(
        f"alias {alias!r} of prompt {prompt!r} is managed by {mark} (owner tag on the MLflow prompt), so "
        f"this resource will not {action} the alias; MLflow is unchanged.",
        holder=str(mark),
    )


def refused_outcome(outcome: Outcome, refusal: Refusal | None) -> Outcome:
    """A follow-mode pass whose one-shot request was refused: it still follows MLflow (resolution,
    projection) but says NotAuthorized, Stalled, until the request is withdrawn or allowed."""
    if refusal is None:
        return outcome
    return replace(
        outcome,
        ready=False,
        reason=Reason.NOT_AUTHORIZED,
        message=f"{refusal.message} Remove the request annotation to withdraw it.",
        stalled=True,
        owner=refusal.holder,
    )


def serves_no_namespace(spec: RegistrySpec) -> str | None:
    """The registry's Ready message when it serves nobody: a ClusterPromptRegistry without
    conditions (deny by default, never silently open to every namespace)."""
    if not isinstance(spec, ClusterPromptRegistrySpec) or spec.conditions:
        return None
    return (
        "spec.conditions is empty, so no namespace may use this ClusterPromptRegistry (the default is "
        "deny). Add conditions, e.g. conditions: [{namespaces: [team-a], writePrompts: ['team-a-*']}]"
    )
