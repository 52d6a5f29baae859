"""What both finalizers do with MLflow: carry out reconcile/deletion.py's plan, retry or give up.

Shared by `alias_deleted` (handlers/aliases.py: a PromptAlias with deletionPolicy Delete) and
`experiment_deleted` (handlers/experiments.py: the candidate alias). The decisions are pure
(`plan_deletion`, `after_failure`, `deleting_conditions`); here they meet kopf and the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import kopf

from promptalias.api.resource import Resource
from promptalias.reconcile.deletion import (
    DeletionPlan,
    Retry,
    abandoned,
    after_failure,
    deleting_conditions,
    plan_deletion,
    since_deletion,
)
from promptalias.reconcile.ownership import Owner, owner_tag_key
from promptalias.registry import MlflowRegistry, RegistryUnavailable
from promptalias.vocabulary import ABANDON_ANNOTATION


@dataclass(frozen=True)
class Finalizer:
    """One attempt of a finalizer over `resource` (the parsed body), with kopf's arguments."""

    body: kopf.Body
    patch: kopf.Patch
    retry: int
    resource: Resource
    timeout_s: float

    def abandon(self, left: str) -> bool:
        """With the abandon annotation: say what is `left` in MLflow (a Warning), touch nothing."""
        if not abandoned(self.resource.metadata.annotations):
            return False
        message = f"{ABANDON_ANNOTATION}=true: {left}"
        kopf.event(self.body, type="Warning", reason="AliasAbandoned", message=message)
        return True

    async def remove_alias(
        self,
        client: MlflowRegistry,
        *,
        prompt: str,
        alias: str,
        wanted: bool,
        version: int | None,
        me: Owner,
        deleted: Callable[[int | None], str],
        kept: Callable[[int | None], str] | None = None,
    ) -> DeletionPlan:
        """Read the prompt, then delete the alias and release our owner tag as `plan_deletion`
        says. `deleted` / `kept`: the Event messages, given where the alias pointed."""
        state = await client.get_prompt(prompt)
        current = state.aliases.get(alias)
        mark = Owner.from_tag(state.tags.get(owner_tag_key(alias)))
        plan = plan_deletion(wanted=wanted, version=version, current=current, mark=mark, me=me)
        if plan.delete:
            await client.delete_alias(prompt, alias)
            kopf.event(self.body, type="Normal", reason="AliasDeleted", message=deleted(current))
        elif plan.kept and kept is not None:
            kopf.event(self.body, type="Normal", reason="AliasKept", message=kept(current))
        if plan.release:
            await client.delete_prompt_tag(prompt, owner_tag_key(alias))
        return plan

    def retry_or_give_up(self, exc: Exception, *, to: str, doing: str, left: str = "") -> None:
        """After a failed attempt: raise kopf.TemporaryError (status says Deleting) to try again,
        or post the AliasLeftInMLflow Warning and return, so the resource goes. `to` / `doing`:
        what the finalizer was at ("apply deletionPolicy" / "applying deletionPolicy"); `left`: the
        end of the Warning (what stays in MLflow)."""
        now = datetime.now(UTC)
        meta = self.resource.metadata
        elapsed = since_deletion(meta.deletion_timestamp, now)
        transient = isinstance(exc, RegistryUnavailable)
        step = after_failure(transient=transient, elapsed=elapsed, timeout_s=self.timeout_s, retry=self.retry)
        if isinstance(step, Retry):
            conditions = deleting_conditions(
                self.resource.status.conditions,
                str(exc),
                retry=self.retry,
                generation=self.resource.generation,
                now=now,
            )
            self.patch.status["conditions"] = [condition.to_dict() for condition in conditions]
            raise kopf.TemporaryError(
                f"cannot reach MLflow to {to} ({exc}); retrying. To delete without touching MLflow: "
                f"kubectl annotate {self.resource.KIND.lower()} {meta.name} {ABANDON_ANNOTATION}=true",
                delay=step.delay,
            ) from None
        self.left_in_mlflow(f"gave up {doing} after {elapsed:.0f}s: {exc}{left}")

    def left_in_mlflow(self, message: str) -> None:
        """The AliasLeftInMLflow Warning: the resource goes, and `message` says what stays in MLflow."""
        kopf.event(self.body, type="Warning", reason="AliasLeftInMLflow", message=message)


__all__ = ["Finalizer"]
