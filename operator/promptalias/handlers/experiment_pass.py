"""One reconcile pass over a PromptExperiment: gather observations, plan (pure), carry out, settle.

The pass reads the experiment and its baseline PromptAlias, and decides with reconcile/: the ramp
(`experiment.advance`), validation and the candidate alias (`experiment_candidate`), the promotion
(`experiment_promotion`), the status (`experiment_status.settle`). Here the plans are only carried
out, in a safe order: nothing is written before every check passed; the candidate alias is set
(owner tag first, audit tag after) before the split is published into the baseline's projection
(handlers/experiment_split.py); a promotion moves the baseline through its own spec or its MLflow
alias; the status is written last, so a crash between steps converges on the next pass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, cast

import kopf

from promptalias.api.conditions import Reason
from promptalias.api.duration import parse_duration
from promptalias.api.experiment import ExperimentPhase, PromptExperiment, PromptExperimentStatus
from promptalias.api.promptalias import PromptAlias
from promptalias.handlers.authority import refuse_write
from promptalias.handlers.experiment_analysis import analysis_hook
from promptalias.handlers.experiment_mlflow import ExperimentRegistry
from promptalias.handlers.experiment_split import ExperimentState, baseline_uids, publish
from promptalias.handlers.resource_pass import PassResult, ResourcePass
from promptalias.handlers.state import InvalidRegistryConfig, World
from promptalias.kube import KubeError, NotFound
from promptalias.reconcile.backoff import backoff
from promptalias.reconcile.events import experiment_events
from promptalias.reconcile.experiment import Baseline, Blocked, Progress, advance, read_requests
from promptalias.reconcile.experiment_candidate import (
    baseline_missing,
    baseline_of,
    check_baseline,
    check_claim,
    plan_candidate,
    projection_block,
    split_held,
)
from promptalias.reconcile.experiment_promotion import PromotionPlan, PromotionStep, plan_promotion, promotion
from promptalias.reconcile.experiment_status import (
    Outcome,
    settle,
    stalled,
    synced,
    terminal,
    unavailable,
    with_history,
)
from promptalias.reconcile.ownership import Owner, owner_tag_key, winner
from promptalias.reconcile.registry import KnownRegistry, Unresolved, resolve_registry
from promptalias.reconcile.tenancy import Refusal, WriteAction, mark_refusal
from promptalias.registry import (
    MlflowRegistry,
    PromptState,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailable,
)

log = logging.getLogger(__name__)

PLURAL: Final = PromptExperiment.PLURAL
FIELD_MANAGER: Final = "promptalias-experiment"  # the actor of a promotion in the baseline's history
IDLE_RECHECK_S: Final = 60.0  # candidate-alias drift safety net when the registry has no refreshInterval


class ExperimentPass(ResourcePass):
    """Carries out one reconcile of one PromptExperiment body."""

    def __init__(
        self, world: World, state: ExperimentState, body: Mapping[str, Any], *, fresh: bool, failures: int
    ) -> None:
        self.exp = PromptExperiment.from_body(body)
        super().__init__(world, body, failures=failures)
        self.state = state
        self.fresh = fresh
        self.now = datetime.now(UTC)
        self.me = Owner(world.cluster, self.namespace, f"promptexperiment/{self.name}")
        self.recheck_s = IDLE_RECHECK_S
        self.extra: list[Any] = []  # history entries made by actions (candidate moves, promotion)
        self.warnings: list[tuple[str, str]] = []

    # ---- entry point ---------------------------------------------------------------------------

    async def run(self) -> PassResult:
        spec = self.exp.spec
        requests = read_requests(self.meta.get("annotations"), self.meta.get("managedFields"))
        progress = advance(spec, self.exp.status, now=self.now, requests=requests)
        baseline_name = spec.baseline.name
        if progress.terminal:
            return await self._finish_terminal(progress, requests.promote is not None)
        holder = self.state.holder(self.namespace, baseline_name)
        if holder is not None and holder.uid != self.uid:
            return await self._stalled(
                progress, split_held(f"{holder.namespace}/{holder.name}", baseline_name)
            )
        try:
            baseline_body = await self.world.kube.get_custom(
                PromptAlias.PLURAL, self.namespace, baseline_name
            )
        except NotFound:
            publish(self.world, self.state, self.uid, self.namespace, baseline_name, None)
            return await self._stalled(progress, baseline_missing(self.namespace, baseline_name))
        except KubeError as exc:
            return await self._unavailable(progress, f"cannot read PromptAlias {baseline_name}: {exc}")
        baseline_pa = PromptAlias.from_body(baseline_body)
        baseline = baseline_of(self.namespace, baseline_name, baseline_pa, baseline_body.get("metadata", {}))
        problem = check_baseline(spec, self.exp.status, progress, baseline)
        if problem is not None:
            return await self._stalled(progress, problem)
        known = resolve_registry(
            baseline_pa.spec.registry_ref,
            self.namespace,
            self.world.namespaces.get(self.namespace),
            self.world.registries,
        )
        if isinstance(known, Unresolved):
            return await self._stalled(progress, Blocked(Reason.INVALID_REGISTRY, known.message))
        self.recheck_s = parse_duration(known.spec.refresh_interval) or IDLE_RECHECK_S
        try:
            client = await self.world.client(known)
            return await self._with_registry(
                progress, requests.promote, baseline, baseline_body, known, client
            )
        except InvalidRegistryConfig as exc:
            return await self._stalled(progress, Blocked(Reason.INVALID_REGISTRY, f"{known.key}: {exc}"))
        except RegistryAuthError as exc:
            why = f"{known.key}: MLflow refused the credentials: {exc}"
            return await self._stalled(progress, Blocked(Reason.INVALID_REGISTRY, why))
        except RegistryUnavailable as exc:
            return await self._unavailable(progress, str(exc))
        except RegistryError as exc:
            return await self._unavailable(progress, f"unexpected answer from MLflow: {exc}")
        except KubeError as exc:
            return await self._unavailable(progress, f"Kubernetes API: {exc}")

    # ---- with a working client -----------------------------------------------------------------

    async def _with_registry(
        self,
        progress: Progress,
        promote_actor: str | None,
        baseline: Baseline,
        baseline_body: Mapping[str, Any],
        known: KnownRegistry,
        client: MlflowRegistry,
    ) -> PassResult:
        spec = self.exp.spec
        cand_alias = spec.candidate.alias
        self.state.targets[self.uid] = (known, baseline.prompt)
        holder = winner(
            self.world.table.claims(prompt=baseline.prompt, alias=cand_alias),
            (known.endpoint, baseline.prompt, cand_alias),
        )
        refusal = self._refuse(known, WriteAction.CANDIDATE, baseline.prompt, cand_alias)
        blocked = check_claim(
            spec,
            baseline.prompt,
            holder=holder.ref if holder is not None else None,
            refusal=refusal.message if refusal is not None else None,
        )
        if blocked is not None:
            return await self._stalled(progress, blocked)
        mlflow = ExperimentRegistry(self.world, client, self.me)
        state = await mlflow.read_prompt(baseline.prompt, fresh=self.fresh, max_age_s=self.recheck_s)
        mark = Owner.from_tag(state.tags.get(owner_tag_key(cand_alias))) if state is not None else None
        version = None
        if state is not None and (mark is None or mark == self.me):
            version = await mlflow.read_version(baseline.prompt, spec.candidate.version)
        candidate = plan_candidate(
            spec,
            progress,
            prompt=baseline.prompt,
            tracking_uri=known.spec.tracking_uri,
            prompt_found=state is not None,
            version_found=version is not None,
            current=state.aliases.get(cand_alias) if state is not None else None,
            mark=mark,
            me=self.me,
            now=self.now,
        )
        if candidate.blocked is not None:
            return await self._stalled(progress, candidate.blocked)
        assert state is not None
        assert version is not None
        await mlflow.write_candidate(state, cand_alias, candidate)
        if candidate.history is not None:
            self.extra.append(candidate.history)

        promoting = self._plan_promotion(progress, promote_actor, baseline, known, state)
        if promoting.blocked is not None:
            return await self._stalled(progress, promoting.blocked)
        await self._carry_out_promotion(mlflow, state, baseline, baseline_body, promoting)
        progress = promoting.progress

        hook = await analysis_hook(  # spec.analysis (handlers/experiment_analysis.py)
            kube=self.world.kube, exp=self.exp, namespace=self.namespace, name=self.name,
            now=self.now, progress=progress, baseline=baseline, client=client,
        )  # fmt: skip
        self.extra.extend(hook.history)
        block = None
        if progress.publishes:
            block = projection_block(
                spec,
                progress.weight,
                template=version.template,
                response_format=version.response_format,
                model_config=version.model_config,
            )
        publish(self.world, self.state, self.uid, self.namespace, baseline.name, block)
        outcome = hook.apply(synced(promoting.message, promoting.reconciling))
        delay = progress.wake_after if progress.wake_after is not None else self.recheck_s
        return await self._finish(progress, outcome, delay=hook.delay(min(delay, self.recheck_s)))

    def _refuse(self, known: KnownRegistry, action: WriteAction, prompt: str, alias: str) -> Refusal | None:
        """Why this namespace may not make the write (docs/operator.md, Tenancy), or None."""
        return refuse_write(self.world, known, action, namespace=self.namespace, prompt=prompt, alias=alias)

    def _plan_promotion(
        self,
        progress: Progress,
        actor: str | None,
        baseline: Baseline,
        known: KnownRegistry,
        state: PromptState,
    ) -> PromotionPlan:
        version = self.exp.spec.candidate.version
        refusal = None
        if promotion(baseline, version, requested=progress.promote) == PromotionStep.MOVE_ALIAS:
            by_tenancy = self._refuse(known, WriteAction.PROMOTE, baseline.prompt, baseline.alias)
            refused = by_tenancy or mark_refusal(
                Owner.from_tag(state.tags.get(owner_tag_key(baseline.alias))),
                (self.me, self.world.owner(self.namespace, baseline.name)),
                action=WriteAction.PROMOTE,
                prompt=baseline.prompt,
                alias=baseline.alias,
            )
            refusal = refused.message if refused is not None else None
        return plan_promotion(
            self.exp.spec,
            self.exp.status,
            progress,
            baseline,
            actor=actor,
            current=state.aliases.get(baseline.alias),
            me=self.me,
            now=self.now,
            refusal=refusal,
        )

    async def _carry_out_promotion(
        self,
        mlflow: ExperimentRegistry,
        state: PromptState,
        baseline: Baseline,
        baseline_body: Mapping[str, Any],
        plan: PromotionPlan,
    ) -> None:
        if plan.patch_spec is not None:
            await self._patch_baseline_version(baseline.name, plan.patch_spec)
        await mlflow.move_baseline(state, baseline.alias, plan)
        if plan.poke_baseline:
            self.world.poke(baseline_uids(self.world, self.namespace, baseline.name), fresh=True)
        if plan.warning is not None:
            kopf.event(
                cast(kopf.Body, baseline_body),
                type="Warning",
                reason="PromotionPending",
                message=plan.warning,
            )
            self.warnings.append(("PromotionPending", plan.warning))
        self.extra.extend(plan.history)

    async def _patch_baseline_version(self, name: str, version: int) -> None:
        """Promote through the baseline's own spec, so its history names this field manager."""
        await self.world.kube.patch_custom(
            PromptAlias.PLURAL,
            self.namespace,
            name,
            {"spec": {"version": version}},
            field_manager=FIELD_MANAGER,
        )

    # ---- finishing -----------------------------------------------------------------------------

    async def _finish_terminal(self, progress: Progress, promote_requested: bool) -> PassResult:
        spec = self.exp.spec
        publish(self.world, self.state, self.uid, self.namespace, spec.baseline.name, None)
        done = terminal(spec, self.exp.status, progress, promote_requested=promote_requested)
        if done.warning is not None:
            self.warnings.append(done.warning)
        return await self._finish(progress, done.outcome, delay=IDLE_RECHECK_S * 10)

    async def _stalled(self, progress: Progress, blocked: Blocked) -> PassResult:
        return await self._finish(progress, stalled(blocked), delay=self.recheck_s)

    async def _unavailable(self, progress: Progress, message: str) -> PassResult:
        delay = backoff(self.failures)
        result = await self._finish(progress, unavailable(message, delay), delay=delay)
        result.transient_failure = True
        return result

    async def _finish(self, progress: Progress, outcome: Outcome, *, delay: float) -> PassResult:
        old = self.exp.status
        outcome = with_history(outcome, tuple(self.extra))
        new = settle(old, progress, outcome, generation=self.generation, now=self.now)
        old_dict, new_dict = old.to_dict(), new.to_dict()
        if old_dict != new_dict:
            patch: dict[str, Any] = dict(new_dict)
            for key in old_dict:
                if key not in new_dict:
                    patch[key] = None
            try:
                await self.world.kube.patch_status(PLURAL, self.namespace, self.name, patch)
            except KubeError as exc:
                log.warning("could not write status of %s/%s: %s", self.namespace, self.name, exc)
                return PassResult(delay=backoff(self.failures), transient_failure=True)
        if self.uid in self.state.entries:
            self.state.entries[self.uid].terminal = new.phase in (
                ExperimentPhase.PROMOTED,
                ExperimentPhase.ABORTED,
            )
        self._events(old, new, outcome, progress)
        consumed = progress.consumed if not outcome.keep_progress else frozenset()
        consumed = consumed & set(self.meta.get("annotations") or {})
        if consumed:
            try:
                await self.world.kube.patch_annotations(
                    PLURAL, self.namespace, self.name, dict.fromkeys(sorted(consumed))
                )
            except KubeError as exc:
                log.warning(
                    "could not remove handled requests from %s/%s: %s", self.namespace, self.name, exc
                )
        return PassResult(delay=max(0.05, delay))

    def _events(
        self, old: PromptExperimentStatus, new: PromptExperimentStatus, outcome: Outcome, progress: Progress
    ) -> None:
        body = cast(kopf.Body, self.body)
        for event in experiment_events(old, new, outcome, progress, self.warnings):
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)


__all__ = ["FIELD_MANAGER", "IDLE_RECHECK_S", "ExperimentPass"]
