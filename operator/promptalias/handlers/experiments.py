"""kopf wiring for PromptExperiment: a worker per experiment, fed by raw events, and a finalizer.

One pass (ExperimentPass) reads the experiment and its baseline PromptAlias, decides with
reconcile/experiment.py, then acts: points the candidate alias at the candidate version in MLflow
(same registry as the baseline, owner tag + audit tag), publishes the split into
`world.experiments[(namespace, baseline)]` and pokes the baseline's worker so its projection
ConfigMap carries it, moves the baseline on promotion (through its spec, or reports the Git change),
and writes the status. Deleting the experiment removes the split and the candidate alias.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from promptalias.api.conditions import Reason
from promptalias.api.duration import parse_duration
from promptalias.api.experiment import ExperimentPhase, PromptExperiment, PromptExperimentStatus
from promptalias.api.promptalias import PromptAlias
from promptalias.api.types import GROUP, VERSION
from promptalias.handlers.authority import refuse_write
from promptalias.handlers.experiment_analysis import analysis_hook
from promptalias.handlers.metrics import METRICS
from promptalias.handlers.scope import in_scope
from promptalias.handlers.state import InvalidRegistryConfig, Snapshot, Worker, World, snapshot_key
from promptalias.handlers.worker import WorkerSpec, backoff, run_worker
from promptalias.kube import KubeError, NotFound
from promptalias.reconcile.audit import audit_tag
from promptalias.reconcile.experiment import (
    Baseline,
    ExperimentReason,
    Outcome,
    Progress,
    PromotionStep,
    advance,
    candidate_set_entry,
    git_change,
    projection_block,
    promoted,
    promotion,
    promotion_requested_entry,
    read_requests,
    ready_message,
    reconciling_reason,
    settle,
)
from promptalias.reconcile.gitops import gitops_manager
from promptalias.reconcile.managed_fields import version_actor
from promptalias.reconcile.ownership import Owner, owner_tag_key, winner
from promptalias.reconcile.registry import KnownRegistry, Unresolved, resolve_registry
from promptalias.reconcile.tenancy import WriteAction, mark_refusal
from promptalias.reconcile.timestamps import parse_timestamp
from promptalias.registry import (
    MlflowRegistry,
    PromptNotFound,
    PromptState,
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    RegistryUnavailable,
    VersionNotFound,
)
from promptalias.vocabulary import ABANDON_ANNOTATION, EXPERIMENT_REQUEST_ANNOTATIONS

log = logging.getLogger(__name__)

PLURAL = PromptExperiment.PLURAL
FIELD_MANAGER = "promptalias-experiment"  # shows up as the actor of a promotion in the baseline's history
IDLE_RECHECK_S = 60.0  # candidate-alias drift safety net when the registry has no refreshInterval
DELETION_TIMEOUT_S = 120.0
PRELOAD_TIMEOUT_S = 10.0


# ---- shared state (kept in kopf's memo beside the World) -----------------------------------------


@dataclass
class ExperimentEntry:
    """What routing of pokes and the one-experiment-per-baseline rule need to know."""

    uid: str
    namespace: str
    name: str
    baseline: str
    created: datetime
    terminal: bool
    deleting: bool


@dataclass
class ExperimentState:
    entries: dict[str, ExperimentEntry] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    published: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns, baseline) -> uid
    # uid -> (registry, prompt) of the last pass: deletion still finds MLflow when the baseline or
    # the registry went first (a namespace being deleted removes them in any order).
    targets: dict[str, tuple[KnownRegistry, str]] = field(default_factory=dict)

    def worker(self, uid: str) -> Worker:
        if uid not in self.workers:
            self.workers[uid] = Worker(uid)
        return self.workers[uid]

    def poke(self, uids: list[str], *, fresh: bool) -> None:
        for uid in uids:
            if uid in self.workers:
                self.workers[uid].poke(fresh=fresh)

    def holder(self, namespace: str, baseline: str) -> ExperimentEntry | None:
        """The experiment that owns a baseline's split: the oldest running one."""
        contenders = [
            entry
            for entry in self.entries.values()
            if entry.namespace == namespace
            and entry.baseline == baseline
            and not entry.terminal
            and not entry.deleting
        ]
        if not contenders:
            return None
        return min(contenders, key=lambda entry: (entry.created, entry.name, entry.uid))


def experiment_state(memo: Any) -> ExperimentState:
    state: ExperimentState | None = getattr(memo, "experiment_state", None)
    if state is None:
        state = ExperimentState()
        memo.experiment_state = state
    return state


def poke_experiments_for_prompt(memo: Any, endpoint: str, prompt: str) -> None:
    """Wake the experiments whose baseline uses `prompt` on `endpoint` (e.g. after a webhook)."""
    world: World | None = getattr(memo, "world", None)
    state: ExperimentState | None = getattr(memo, "experiment_state", None)
    if world is None or state is None:
        return
    wanted = set()
    for uid in world.uids_where(endpoint=endpoint, prompt=prompt):
        alias = world.aliases[uid]
        wanted.add((alias.namespace, alias.name))
    state.poke(
        [entry.uid for entry in state.entries.values() if (entry.namespace, entry.baseline) in wanted],
        fresh=False,
    )


def _entry(body: Mapping[str, Any]) -> ExperimentEntry | None:
    meta = body.get("metadata", {})
    spec = body.get("spec") or {}
    baseline = (spec.get("baseline") or {}).get("name")
    if not baseline:
        return None
    phase = (body.get("status") or {}).get("phase")
    return ExperimentEntry(
        uid=str(meta.get("uid")),
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        baseline=str(baseline),
        created=parse_timestamp(meta.get("creationTimestamp")) or datetime.now(UTC),
        terminal=phase in (ExperimentPhase.PROMOTED, ExperimentPhase.ABORTED),
        deleting=meta.get("deletionTimestamp") is not None,
    )


def _baseline_uids(world: World, namespace: str, name: str) -> list[str]:
    return [uid for uid in world.uids_where(namespace=namespace) if world.aliases[uid].name == name]


def _publish(
    world: World,
    state: ExperimentState,
    uid: str,
    namespace: str,
    baseline: str,
    block: dict[str, Any] | None,
) -> None:
    """Put (or, with None, take) the split into the baseline's projection; wake its worker if changed."""
    key = (namespace, baseline)
    for stale in [k for k, owner in state.published.items() if owner == uid and k != key]:
        # spec.baseline was changed: the previous baseline serves without the split again.
        state.published.pop(stale, None)
        world.experiments.pop(stale, None)
        world.poke(_baseline_uids(world, *stale), fresh=False)
    if block is None:
        if state.published.get(key) != uid:
            return
        state.published.pop(key, None)
        changed = world.experiments.pop(key, None) is not None
    else:
        changed = world.experiments.get(key) != block or state.published.get(key) != uid
        world.experiments[key] = block
        state.published[key] = uid
    if changed:
        world.poke(_baseline_uids(world, namespace, baseline), fresh=False)


# ---- events --------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL, when=in_scope)
async def experiment_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Keep the experiment index current; wake the worker on spec changes and requests."""
    state = experiment_state(memo)
    body = event["object"]
    meta = body.get("metadata", {})
    uid = str(meta.get("uid"))
    before = state.entries.get(uid)
    if event["type"] == "DELETED":
        state.entries.pop(uid, None)
        state.workers.pop(uid, None)
        now = None
    else:
        now = _entry(body)
        if now is not None:
            state.entries[uid] = now
    # A holder that finishes or goes hands the baseline to the next experiment in line.
    if before is not None and (
        now is None or (now.terminal, now.deleting) != (before.terminal, before.deleting)
    ):
        state.poke(
            [
                entry.uid
                for entry in state.entries.values()
                if entry.uid != uid
                and (entry.namespace, entry.baseline) == (before.namespace, before.baseline)
            ],
            fresh=False,
        )
    if now is not None:
        status = body.get("status") or {}
        annotations = set(meta.get("annotations") or {})
        if status.get("observedGeneration") != meta.get("generation") or annotations & set(
            EXPERIMENT_REQUEST_ANNOTATIONS
        ):
            state.worker(uid).poke(fresh=True)


@kopf.on.event(GROUP, VERSION, PromptAlias.PLURAL, when=in_scope)
async def baseline_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A baseline changed (created, promoted, resolved, deleted): wake its experiments."""
    state = experiment_state(memo)
    meta = event["object"].get("metadata", {})
    namespace, name = meta.get("namespace"), meta.get("name")
    state.poke(
        [
            entry.uid
            for entry in state.entries.values()
            if entry.namespace == namespace and entry.baseline == name
        ],
        fresh=False,
    )


# ---- the worker ----------------------------------------------------------------------------------


@dataclass
class PassResult:
    delay: float
    transient_failure: bool = False


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0, when=in_scope)
async def experiment_worker(
    body: kopf.Body, uid: str | None, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    """Reconcile one PromptExperiment whenever poked or when its next step is due."""
    world: World = memo.world
    state = experiment_state(memo)

    async def one_pass(snapshot: Mapping[str, Any], fresh: bool, failures: int) -> PassResult:
        return await ExperimentPass(world, state, snapshot, fresh=fresh, failures=failures).run()

    spec = WorkerSpec("PromptExperiment", PLURAL, one_pass)
    await run_worker(world, state.worker(str(uid)), spec, body, stopped)


class ExperimentPass:
    """One reconcile of one PromptExperiment body."""

    def __init__(
        self, world: World, state: ExperimentState, body: Mapping[str, Any], *, fresh: bool, failures: int
    ) -> None:
        self.world = world
        self.state = state
        self.body = body
        self.fresh = fresh
        self.failures = failures
        self.exp = PromptExperiment.from_body(body)
        self.meta = body.get("metadata", {})
        self.namespace = str(self.meta.get("namespace"))
        self.name = str(self.meta.get("name"))
        self.uid = str(self.meta.get("uid"))
        self.generation = int(self.meta.get("generation") or 1)
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
                progress,
                Reason.CONFLICT,
                f"PromptExperiment {holder.namespace}/{holder.name} (older) already splits the traffic of "
                f"PromptAlias {baseline_name}; one experiment per baseline. Finish (promote or abort) or "
                "delete it; this one starts then.",
            )
        try:
            baseline_body = await self.world.kube.get_custom(
                PromptAlias.PLURAL, self.namespace, baseline_name
            )
        except NotFound:
            _publish(self.world, self.state, self.uid, self.namespace, baseline_name, None)
            return await self._stalled(
                progress,
                ExperimentReason.BASELINE_NOT_FOUND,
                f"PromptAlias {self.namespace}/{baseline_name} does not exist; create it or fix "
                "spec.baseline.name",
            )
        except KubeError as exc:
            return await self._unavailable(progress, f"cannot read PromptAlias {baseline_name}: {exc}")
        baseline_pa = PromptAlias.from_body(baseline_body)
        bmeta = baseline_body.get("metadata", {})
        baseline = Baseline(
            namespace=self.namespace,
            name=baseline_name,
            prompt=baseline_pa.spec.prompt,
            alias=baseline_pa.spec.alias,
            version=baseline_pa.spec.version,
            resolved_version=baseline_pa.status.resolved_version,
            projection_enabled=baseline_pa.spec.projection.enabled,
            gitops=gitops_manager(bmeta),
            spec_actor=version_actor(bmeta.get("managedFields")),
        )
        problem = self._invalid(baseline, progress)
        if problem is not None:
            return await self._stalled(progress, ExperimentReason.INVALID_CANDIDATE, problem)
        if not baseline.projection_enabled:
            return await self._stalled(
                progress,
                ExperimentReason.PROJECTION_DISABLED,
                f"PromptAlias {baseline_name} has spec.projection.enabled: false, so clients cannot see "
                "the split; enable the projection",
            )
        known = resolve_registry(
            baseline_pa.spec.registry_ref,
            self.namespace,
            self.world.namespaces.get(self.namespace),
            self.world.registries,
        )
        if isinstance(known, Unresolved):
            return await self._stalled(progress, Reason.INVALID_REGISTRY, known.message)
        self.recheck_s = parse_duration(known.spec.refresh_interval) or IDLE_RECHECK_S
        try:
            client = await self.world.client(known)
            return await self._with_registry(
                progress, requests.promote, baseline, baseline_body, known, client
            )
        except InvalidRegistryConfig as exc:
            return await self._stalled(progress, Reason.INVALID_REGISTRY, f"{known.key}: {exc}")
        except RegistryAuthError as exc:
            return await self._stalled(
                progress, Reason.INVALID_REGISTRY, f"{known.key}: MLflow refused the credentials: {exc}"
            )
        except RegistryUnavailable as exc:
            return await self._unavailable(progress, str(exc))
        except RegistryError as exc:
            return await self._unavailable(progress, f"unexpected answer from MLflow: {exc}")
        except KubeError as exc:
            return await self._unavailable(progress, f"Kubernetes API: {exc}")

    def _invalid(self, baseline: Baseline, progress: Progress) -> str | None:
        spec = self.exp.spec
        if spec.candidate.alias == baseline.alias:
            return (
                f"the candidate alias {spec.candidate.alias!r} is the baseline's own alias; choose another "
                "alias (e.g. experimental-parser)"
            )
        not_started = self.exp.status.phase is None
        if (
            not_started
            and not progress.promote
            and baseline.resolved_version == spec.candidate.version
            and baseline.version in (None, spec.candidate.version)
        ):
            return (
                f"the baseline {baseline.alias} already serves version {spec.candidate.version}: nothing to "
                "compare; choose another candidate version"
            )
        return None

    # ---- with a working client -----------------------------------------------------------------

    async def _read_prompt(self, known: KnownRegistry, client: MlflowRegistry, prompt: str) -> PromptState:
        key = snapshot_key(client, prompt)
        snap = self.world.snapshots.get(key)
        young = snap is not None and time.monotonic() - snap.fetched < self.recheck_s
        if not self.fresh and snap is not None and snap.state is not None and young:
            return snap.state
        state = await client.get_prompt(prompt)
        self.world.snapshots[key] = Snapshot(state, time.monotonic())
        return state

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
        cand_alias, cand_version = spec.candidate.alias, spec.candidate.version
        self.state.targets[self.uid] = (known, baseline.prompt)
        holder = winner(self.world.claims(), (known.endpoint, baseline.prompt, cand_alias))
        if holder is not None:
            return await self._stalled(
                progress,
                Reason.CONFLICT,
                f"PromptAlias {holder.ref} manages alias {cand_alias!r} of prompt {baseline.prompt!r}; an "
                "experiment's candidate alias must be its own. Choose another candidate alias.",
            )
        refusal = refuse_write(
            self.world,
            known,
            WriteAction.CANDIDATE,
            namespace=self.namespace,
            prompt=baseline.prompt,
            alias=cand_alias,
        )
        if refusal is not None:
            return await self._stalled(progress, Reason.NOT_AUTHORIZED, refusal.message)
        try:
            state = await self._read_prompt(known, client, baseline.prompt)
        except PromptNotFound:
            return await self._stalled(
                progress,
                Reason.VERSION_NOT_FOUND,
                f"prompt {baseline.prompt!r} does not exist in MLflow ({known.spec.tracking_uri})",
            )
        mark = Owner.from_tag(state.tags.get(owner_tag_key(cand_alias)))
        if mark is not None and mark != self.me:
            return await self._stalled(
                progress,
                Reason.OWNED_ELSEWHERE,
                f"alias {cand_alias!r} of prompt {baseline.prompt!r} is managed by {mark} (owner tag on the "
                "MLflow prompt); choose another candidate alias",
            )
        try:
            version = await client.get_version(baseline.prompt, cand_version)
        except (VersionNotFound, RegistryNotFound):
            return await self._stalled(
                progress,
                Reason.VERSION_NOT_FOUND,
                f"version {cand_version} of prompt {baseline.prompt} does not exist in MLflow; register it "
                "or fix spec.candidate.version",
            )
        current = state.aliases.get(cand_alias)
        if current != cand_version:
            if mark is None:
                await client.set_prompt_tag(baseline.prompt, owner_tag_key(cand_alias), self.me.to_tag())
            await client.set_alias(baseline.prompt, cand_alias, cand_version)
            METRICS.alias_writes["CandidateSet"] += 1
            tag_key, tag_value = audit_tag(cand_alias, by=str(self.me), at=self.now, replaced=current)
            await client.set_version_tag(baseline.prompt, cand_version, tag_key, tag_value)
            self._remember_alias(client, state, cand_alias, cand_version, claim=mark is None)
            self.extra.append(candidate_set_entry(progress, self.now, cand_alias, cand_version, current))

        step = promotion(baseline, cand_version, requested=progress.promote)
        reconciling: str | None = None
        message = ready_message(spec, progress, baseline.alias)
        already = reconciling_reason(self.exp.status)
        if step == PromotionStep.DONE:
            actor = promote_actor or baseline.spec_actor
            progress = promoted(progress, self.now, baseline, cand_version, actor)
            message = ready_message(spec, progress, baseline.alias)
        elif step == PromotionStep.REPORT_GIT:
            assert baseline.gitops is not None
            reconciling, message = (
                ExperimentReason.PROMOTION_PENDING,
                git_change(self.namespace, baseline.name, cand_version, baseline.gitops),
            )
            if already != ExperimentReason.PROMOTION_PENDING:
                self.extra.append(
                    promotion_requested_entry(
                        progress,
                        self.now,
                        baseline,
                        cand_version,
                        promote_actor,
                        "waiting for the Git change",
                    )
                )
                kopf.event(
                    cast(kopf.Body, baseline_body), type="Warning", reason="PromotionPending", message=message
                )
                self.warnings.append(("PromotionPending", message))
        elif step in (PromotionStep.PATCH_SPEC, PromotionStep.MOVE_ALIAS, PromotionStep.WAIT):
            reconciling = ExperimentReason.PROMOTING
            message = (
                f"promoting: moving {baseline.alias} of PromptAlias {baseline.name} to version {cand_version}"
            )
            if step == PromotionStep.PATCH_SPEC:
                await self._patch_baseline_version(baseline.name, cand_version)
                how = f"spec.version of PromptAlias {baseline.name} set to {cand_version}"
            elif step == PromotionStep.MOVE_ALIAS:
                refusal = refuse_write(
                    self.world,
                    known,
                    WriteAction.PROMOTE,
                    namespace=self.namespace,
                    prompt=baseline.prompt,
                    alias=baseline.alias,
                ) or mark_refusal(
                    Owner.from_tag(state.tags.get(owner_tag_key(baseline.alias))),
                    (self.me, self.world.owner(self.namespace, baseline.name)),
                    action=WriteAction.PROMOTE,
                    prompt=baseline.prompt,
                    alias=baseline.alias,
                )
                if refusal is not None:
                    return await self._stalled(progress, Reason.NOT_AUTHORIZED, refusal.message)
                previous = state.aliases.get(baseline.alias)
                if previous != cand_version:
                    await client.set_alias(baseline.prompt, baseline.alias, cand_version)
                    METRICS.alias_writes["Promoted"] += 1
                    tag_key, tag_value = audit_tag(
                        baseline.alias, by=str(self.me), at=self.now, replaced=previous
                    )
                    await client.set_version_tag(baseline.prompt, cand_version, tag_key, tag_value)
                    self._remember_alias(client, state, baseline.alias, cand_version, claim=False)
                self.world.poke(_baseline_uids(self.world, self.namespace, baseline.name), fresh=True)
                how = f"MLflow alias {baseline.alias} moved to {cand_version} (the baseline follows MLflow)"
            else:
                how = f"spec.version of PromptAlias {baseline.name} is {cand_version}"
            if already != ExperimentReason.PROMOTING:
                self.extra.append(
                    promotion_requested_entry(progress, self.now, baseline, cand_version, promote_actor, how)
                )

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
        _publish(self.world, self.state, self.uid, self.namespace, baseline.name, block)
        outcome = Outcome(
            ready=True,
            reason=str(Reason.SYNCED),
            message=message,
            reconciling=reconciling is not None,
            reconciling_reason=str(reconciling) if reconciling is not None else None,
        )
        outcome = hook.apply(outcome)
        delay = progress.wake_after if progress.wake_after is not None else self.recheck_s
        return await self._finish(progress, outcome, delay=hook.delay(min(delay, self.recheck_s)))

    def _remember_alias(
        self, client: MlflowRegistry, state: PromptState, alias: str, version: int, *, claim: bool
    ) -> None:
        tags = dict(state.tags)
        if claim:
            tags[owner_tag_key(alias)] = self.me.to_tag()
        updated = PromptState(
            state.name,
            {**state.aliases, alias: version},
            tags,
            state.is_prompt,
            state.description,
            state.latest_version,
        )
        self.world.snapshots[snapshot_key(client, state.name)] = Snapshot(updated, time.monotonic())

    async def _patch_baseline_version(self, name: str, version: int) -> None:
        """Promote through the baseline's own spec, so its history names this field manager."""
        kube = self.world.kube
        try:
            await asyncio.to_thread(
                kube.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PromptAlias.PLURAL,
                name,
                {"spec": {"version": version}},
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            raise KubeError(
                f"patch spec.version of PromptAlias {self.namespace}/{name}: {exc.status} {exc.reason}",
                int(exc.status or 0),
            ) from None

    # ---- finishing -----------------------------------------------------------------------------

    async def _finish_terminal(self, progress: Progress, promote_requested: bool) -> PassResult:
        spec = self.exp.spec
        _publish(self.world, self.state, self.uid, self.namespace, spec.baseline.name, None)
        if promote_requested and progress.phase == ExperimentPhase.ABORTED:
            self.warnings.append(
                (
                    "PromoteIgnored",
                    "the experiment was aborted; a promotion no longer applies. Create a new experiment, "
                    f"or set spec.version: {spec.candidate.version} on PromptAlias {spec.baseline.name}",
                )
            )
        message = ready_message(spec, progress, None)
        old_ready = self.exp.status.condition("Ready")
        if not progress.history and old_ready is not None and old_ready.status == "True":
            message = old_ready.message  # unchanged since it finished: keep the words it finished with
        outcome = Outcome(ready=True, reason=str(Reason.SYNCED), message=message)
        return await self._finish(progress, outcome, delay=IDLE_RECHECK_S * 10)

    async def _stalled(self, progress: Progress, reason: str, message: str) -> PassResult:
        outcome = Outcome(ready=False, reason=str(reason), message=message, stalled=True, keep_progress=True)
        return await self._finish(progress, outcome, delay=self.recheck_s)

    async def _unavailable(self, progress: Progress, message: str) -> PassResult:
        delay = backoff(self.failures)
        outcome = Outcome(
            ready=False,
            reason=str(Reason.REGISTRY_UNAVAILABLE),
            message=f"{message}; retrying in {delay:.0f}s (the current split stays)",
            reconciling=True,
            keep_progress=True,
        )
        result = await self._finish(progress, outcome, delay=delay)
        result.transient_failure = True
        return result

    async def _finish(self, progress: Progress, outcome: Outcome, *, delay: float) -> PassResult:
        old = self.exp.status
        outcome = replace(outcome, extra_history=tuple(self.extra))
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
        written = (() if outcome.keep_progress else progress.history) + outcome.extra_history
        for entry in written:
            kopf.event(body, type="Normal", reason=entry.reason, message=entry.message or "")
        for reason, message in self.warnings:
            kopf.event(body, type="Warning", reason=reason, message=message)
        before = old.condition("Ready")
        after = new.condition("Ready")
        if (
            after is not None
            and not outcome.ready
            and (before is None or before.reason != after.reason or before.message != after.message)
        ):
            kopf.event(body, type="Warning", reason=after.reason, message=after.message)


# ---- deletion ------------------------------------------------------------------------------------


@kopf.on.delete(GROUP, VERSION, PLURAL, when=in_scope)
async def experiment_deleted(body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """Take the split out of the baseline's projection and remove the candidate alias from MLflow
    (when it still points at the candidate version and no one else owns it)."""
    world: World = memo.world
    state = experiment_state(memo)
    uid = str(meta.get("uid"))
    namespace = str(meta.get("namespace"))
    exp = PromptExperiment.from_body(body)
    spec = exp.spec
    _publish(world, state, uid, namespace, spec.baseline.name, None)
    if (meta.get("annotations") or {}).get(ABANDON_ANNOTATION) == "true":
        kopf.event(
            body,
            type="Warning",
            reason="AliasAbandoned",
            message=f"{ABANDON_ANNOTATION}=true: candidate alias {spec.candidate.alias} left in MLflow",
        )
        return
    target = await _deletion_target(world, state, uid, namespace, spec.baseline.name)
    if isinstance(target, str):
        kopf.event(
            body,
            type="Warning",
            reason="AliasLeftInMLflow",
            message=f"{target}; candidate alias {spec.candidate.alias} was not touched",
        )
        return
    known, prompt = target
    me = Owner(world.cluster, namespace, f"promptexperiment/{meta.get('name')}")
    alias = spec.candidate.alias
    try:
        client = await world.client(known)
        mlflow_state = await client.get_prompt(prompt)
        mark = Owner.from_tag(mlflow_state.tags.get(owner_tag_key(alias)))
        if mark is None or mark == me:
            current = mlflow_state.aliases.get(alias)
            if current == spec.candidate.version:
                await client.delete_alias(prompt, alias)
                kopf.event(
                    body,
                    type="Normal",
                    reason="AliasDeleted",
                    message=f"removed candidate alias {alias} (version {current}) of prompt {prompt}",
                )
            if mark == me:
                await client.delete_prompt_tag(prompt, owner_tag_key(alias))
            world.snapshots.pop(snapshot_key(client, prompt), None)
    except PromptNotFound:
        pass
    except (InvalidRegistryConfig, RegistryError) as exc:
        elapsed = _since_deletion(meta)
        if isinstance(exc, RegistryUnavailable) and elapsed < DELETION_TIMEOUT_S:
            raise kopf.TemporaryError(
                f"cannot reach MLflow to remove candidate alias {alias} ({exc}); retrying. To delete "
                f"without touching MLflow: kubectl annotate promptexperiment {meta.get('name')} "
                f"{ABANDON_ANNOTATION}=true",
                delay=min(30.0, 2.0 ** min(retry, 5)),
            ) from None
        kopf.event(
            body,
            type="Warning",
            reason="AliasLeftInMLflow",
            message=f"gave up removing candidate alias {alias} after {elapsed:.0f}s: {exc}",
        )
    state.targets.pop(uid, None)


async def _deletion_target(
    world: World, state: ExperimentState, uid: str, namespace: str, baseline: str
) -> tuple[KnownRegistry, str] | str:
    """(registry, prompt) of the candidate alias, or why it cannot be found."""
    cached = state.targets.get(uid)
    try:
        body = await world.kube.get_custom(PromptAlias.PLURAL, namespace, baseline)
    except KubeError as exc:
        return cached if cached is not None else f"baseline PromptAlias {baseline} unavailable ({exc})"
    pa = PromptAlias.from_body(body)
    known = resolve_registry(
        pa.spec.registry_ref, namespace, world.namespaces.get(namespace), world.registries
    )
    if isinstance(known, Unresolved):
        return cached if cached is not None else f"registry unavailable ({known.message})"
    return known, pa.spec.prompt


def _since_deletion(meta: Mapping[str, Any]) -> float:
    started = parse_timestamp(meta.get("deletionTimestamp"))
    if started is None:
        return 0.0
    return (datetime.now(UTC) - started).total_seconds()


# ---- start-up ------------------------------------------------------------------------------------


@kopf.on.startup()
async def preload_experiments(memo: kopf.Memo, **_: Any) -> None:
    """Publish every running split before any PromptAlias worker renders a projection, so a restart
    of the operator never shows clients a projection without their experiment."""
    world: World | None = getattr(memo, "world", None)
    if world is None:
        raise kopf.TemporaryError("the operator's shared state is not ready yet", delay=0.1)
    state = experiment_state(memo)
    from promptalias.handlers.startup import _watched

    scopes: list[str | None] = list(_watched()) or [None]
    bodies: list[dict[str, Any]] = []
    for scope in scopes:
        bodies.extend(await world.kube.list_custom(PLURAL, scope))
    for body in bodies:
        if (entry := _entry(body)) is not None:
            state.entries[entry.uid] = entry
    try:
        async with asyncio.timeout(PRELOAD_TIMEOUT_S):
            for body in bodies:
                await _preload_one(world, state, body)
    except TimeoutError:
        log.warning(
            "preloading experiment splits took over %ss; the workers publish the rest", PRELOAD_TIMEOUT_S
        )


async def _preload_one(world: World, state: ExperimentState, body: Mapping[str, Any]) -> None:
    try:
        exp = PromptExperiment.from_body(body)
    except ValueError:
        return
    status = exp.status
    meta = body.get("metadata", {})
    namespace, uid = str(meta.get("namespace")), str(meta.get("uid"))
    progress = Progress(phase=status.phase, weight=status.current_weight or 0, step=status.current_step)
    holder = state.holder(namespace, exp.spec.baseline.name)
    if not progress.publishes or holder is None or holder.uid != uid:
        return
    alias = next(
        (world.aliases[u] for u in _baseline_uids(world, namespace, exp.spec.baseline.name)),
        None,
    )
    known = world.registries.get(alias.registry) if alias is not None else None
    if alias is None or known is None:
        return
    try:
        client = await world.client(known)
        version = await client.get_version(alias.prompt, exp.spec.candidate.version)
    except (InvalidRegistryConfig, RegistryError) as exc:
        log.info("cannot preload the split of %s/%s: %s", namespace, meta.get("name"), exc)
        return
    block = projection_block(
        exp.spec,
        progress.weight,
        template=version.template,
        response_format=version.response_format,
        model_config=version.model_config,
    )
    world.experiments[(namespace, exp.spec.baseline.name)] = block
    state.published[(namespace, exp.spec.baseline.name)] = uid


__all__ = [
    "ExperimentPass",
    "experiment_deleted",
    "experiment_event",
    "experiment_state",
    "experiment_worker",
    "poke_experiments_for_prompt",
    "preload_experiments",
]
