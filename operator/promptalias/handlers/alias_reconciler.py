"""One reconcile pass over a PromptAlias: gather observations, plan (pure), write, settle status.

Order matters for safety: the projection is rendered before MLflow is touched (a prompt too large
to project never moves the alias), ownership is checked on a fresh read before any write, and the
status is derived from what MLflow answered, so a crash between steps converges on the next pass.

Over 400 lines on purpose: one pass, read top to bottom in the order it touches MLflow, status and
the ConfigMap, since that order is the safety argument above; what it decides is in reconcile/.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from promptalias.api.conditions import Reason
from promptalias.api.duration import parse_duration
from promptalias.api.promptalias import PromptAlias, PromptAliasStatus
from promptalias.handlers.authority import refuse_write
from promptalias.handlers.metrics import METRICS, registry_label
from promptalias.handlers.resource_pass import PassResult, ResourcePass
from promptalias.handlers.state import InvalidRegistryConfig, Snapshot, World, snapshot_key
from promptalias.handlers.worker import backoff
from promptalias.kube import KubeError
from promptalias.projection.render import (
    ProjectionError,
    build_configmap,
    render_projection,
)
from promptalias.projection.verify import STALE
from promptalias.reconcile.alias import (
    AliasPlan,
    Outcome,
    intend,
    plan_alias,
    policy_violation,
    settle,
    settled_from_plan,
)
from promptalias.reconcile.alias_requests import rollback_request, takeover_requested
from promptalias.reconcile.audit import audit_tag, write_landed
from promptalias.reconcile.events import alias_events
from promptalias.reconcile.managed_fields import version_actor
from promptalias.reconcile.ownership import Owner, owner_tag_key, winner
from promptalias.reconcile.registry import KnownRegistry, Unresolved, registry_key, resolve_registry
from promptalias.reconcile.status_patch import merge_patch, worth_writing
from promptalias.reconcile.tenancy import Refusal, WriteAction, refused_outcome, same_namespace
from promptalias.registry import (
    MlflowRegistry,
    PromptNotFound,
    PromptState,
    PromptVersion,
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    RegistryTLSError,
    RegistryUnavailable,
    VersionNotFound,
)
from promptalias.stages import stage
from promptalias.vocabulary import (
    CONTENT_HASH_ANNOTATION,
    INTERNAL_TAG_PREFIX,
    ROLLBACK_ANNOTATION,
    TAKEOVER_ANNOTATION,
)

log = logging.getLogger(__name__)

PLURAL = PromptAlias.PLURAL
IDLE_RECHECK_S = 600.0  # safety net; the registry poller wakes workers when MLflow changes


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class AliasPass(ResourcePass):
    """Carries out one reconcile of one PromptAlias body."""

    def __init__(
        self, world: World, body: Mapping[str, Any], *, fresh_after: float | None, failures: int
    ) -> None:
        self.pa = PromptAlias.from_body(body)
        super().__init__(world, body, failures=failures)
        # MLflow must be read no earlier than this (time.monotonic()): a change we were told of
        # after our last read. None: a snapshot younger than refreshInterval will do.
        self.fresh_after = fresh_after
        self.key = f"{self.namespace}/{self.name}"
        self.me: Owner = world.owner(self.namespace, self.name)
        self.now = _now()
        self.refresh_s = 60.0
        self.refusal: Refusal | None = None  # a one-shot request refused for lack of authority
        self._audit: asyncio.Future[None] | None = None  # the audit tag write, in flight
        # The status as this pass found it: every plan starts from it, even after a guessed intent
        # (below) was stored.
        self._base: PromptAliasStatus = self.pa.status
        # A pending move stored on a guess (`_guess_intent`) that no MLflow write has adopted yet:
        # if the pass ends without writing, its status is settled from `_base` (the guess withdrawn).
        self._guess_stored = False

    # ---- entry point ---------------------------------------------------------------------------

    async def run(self) -> PassResult:
        spec = self.pa.spec
        stage("pass", self.key, spec.version)
        key = registry_key(spec.registry_ref, self.namespace)
        known = resolve_registry(
            spec.registry_ref,
            self.namespace,
            self.world.namespaces.get(self.namespace),
            self.world.registries,
        )
        if isinstance(known, Unresolved):
            return await self._stalled(Reason.INVALID_REGISTRY, known.message, delay=IDLE_RECHECK_S)
        self.refresh_s = parse_duration(known.spec.refresh_interval) or IDLE_RECHECK_S
        if spec.version is not None and (refusal := self._refuse_pin(known)) is not None:
            return await self._stalled(
                Reason.NOT_AUTHORIZED, refusal.message, delay=IDLE_RECHECK_S, owner=refusal.holder
            )
        if spec.version is not None:
            rivals = same_namespace(  # other namespaces: the tenancy check above
                self.world.table.claims(prompt=spec.prompt, alias=spec.alias), self.namespace
            )
            holder = winner(rivals, (known.endpoint, spec.prompt, spec.alias))
            if holder is not None and holder.uid != self.uid:
                return await self._stalled(
                    Reason.CONFLICT,
                    f"PromptAlias {holder.ref} (older) already manages alias {spec.alias!r} of "
                    f"prompt {spec.prompt!r} on this registry; this one will not write to MLflow. "
                    "Delete one of them; when the older one goes, this one takes over.",
                    delay=IDLE_RECHECK_S,
                    owner=holder.ref,
                )
        try:
            client = await self.world.client(known)
            return await self._with_registry(known, client)
        except InvalidRegistryConfig as exc:
            return await self._stalled(Reason.INVALID_REGISTRY, f"{key}: {exc}", delay=self.refresh_s)
        except RegistryAuthError as exc:
            return await self._stalled(
                Reason.INVALID_REGISTRY, f"{key}: MLflow refused the credentials: {exc}", delay=self.refresh_s
            )
        except RegistryTLSError as exc:
            return await self._unavailable(f"{key}: TLS handshake with MLflow failed: {exc}")
        except RegistryUnavailable as exc:
            return await self._unavailable(str(exc))
        except RegistryError as exc:  # protocol trouble: treat as transient, but say what it was
            return await self._unavailable(f"unexpected answer from MLflow: {exc}")

    # ---- tenancy: every write needs authority (docs/operator.md, Tenancy) --------------------------

    def _refuse_pin(self, known: KnownRegistry) -> Refusal | None:
        action = WriteAction.TAKEOVER if takeover_requested(self.meta) else WriteAction.PIN
        spec = self.pa.spec
        return refuse_write(
            self.world, known, action, namespace=self.namespace, prompt=spec.prompt, alias=spec.alias
        )

    def _refuse_rollback(self, known: KnownRegistry, rollback_to: int | None) -> Refusal | None:
        spec = self.pa.spec
        if spec.version is not None or rollback_to is None:
            return None
        return refuse_write(
            self.world,
            known,
            WriteAction.ROLLBACK,
            namespace=self.namespace,
            prompt=spec.prompt,
            alias=spec.alias,
        )

    def _settled_delay(self) -> float:
        if self.refusal is not None:
            return self.refresh_s  # a refused request is re-checked like any Stalled state
        return self.refresh_s * 10 if self.refresh_s else IDLE_RECHECK_S

    # ---- with a working client -----------------------------------------------------------------

    def _snapshot_will_do(self, snap: Snapshot) -> bool:
        """Read after the change we were told of, or else younger than refreshInterval."""
        if self.fresh_after is not None:
            return snap.fetched >= self.fresh_after
        return time.monotonic() - snap.fetched < self.refresh_s

    async def _read_prompt(self, known: KnownRegistry, client: MlflowRegistry) -> PromptState | None:
        snap_key = snapshot_key(client, self.pa.spec.prompt)
        snap = self.world.snapshots.get(snap_key)
        if snap is not None and self._snapshot_will_do(snap):
            return snap.state
        try:
            state: PromptState | None = await client.get_prompt(self.pa.spec.prompt)
        except PromptNotFound:
            state = None
        METRICS.prompt_syncs[registry_label(known.key)] += 1
        self.world.snapshots[snap_key] = Snapshot(state, time.monotonic())
        return state

    def _guess_intent(self, client: MlflowRegistry) -> asyncio.Future[bool] | None:
        """Store the pending move that the last read of the prompt predicts while MLflow is read
        again (pinned mode, nothing pending, no one-shot request): when the fresh read agrees, as it
        does unless MLflow changed since, the alias write follows the read at once instead of a
        status write later. The intent is still stored before MLflow is written; a wrong guess costs
        one more status write, and a pass that ends without writing withdraws it (`_finish`)."""
        spec = self.pa.spec
        if (
            spec.version is None
            or self._base.pending_move is not None
            or rollback_request(self.meta) is not None
            or takeover_requested(self.meta)
        ):
            return None
        snap = self.world.snapshots.get(snapshot_key(client, spec.prompt))
        if snap is None or snap.state is None or self._snapshot_will_do(snap):
            return None  # nothing to guess from, or no read to overlap
        guess = self._plan(snap.state, pending_landed=False)
        if not guess.writes or guess.blocked is not None:
            return None

        async def store() -> bool:
            stored = await self._record_intent(guess)
            if stored:
                self._guess_stored = True
            return stored

        return asyncio.ensure_future(store())

    def _plan(self, state: PromptState | None, *, pending_landed: bool) -> AliasPlan:
        spec = self.pa.spec
        owner_tag = state.tags.get(owner_tag_key(spec.alias)) if state is not None else None
        return plan_alias(
            spec,
            self._base,
            generation=self.generation,
            current=state.aliases.get(spec.alias) if state is not None else None,
            owner_mark=Owner.from_tag(owner_tag),
            me=self.me,
            now=self.now,
            spec_actor=version_actor(self.meta.get("managedFields")),
            rollback_to=None if self.refusal is not None else rollback_request(self.meta),
            takeover=takeover_requested(self.meta),
            pending_landed=pending_landed,
        )

    async def _with_registry(self, known: KnownRegistry, client: MlflowRegistry) -> PassResult:
        spec = self.pa.spec
        status = self._base
        guess = self._guess_intent(client)
        try:
            state = await self._read_prompt(known, client)
        finally:
            if guess is not None:
                await guess
        stage("read", self.key, spec.version)
        if state is None and spec.version is not None:
            return await self._stalled(
                Reason.VERSION_NOT_FOUND,
                f"prompt {spec.prompt!r} does not exist in MLflow ({known.spec.tracking_uri}); "
                "register it (mlflow.genai.register_prompt) or fix spec.prompt",
                delay=self.refresh_s,
            )
        current = state.aliases.get(spec.alias) if state is not None else None
        self.refusal = self._refuse_rollback(known, rollback_request(self.meta))
        plan = self._plan(state, pending_landed=await self._pending_landed(client, current))
        if plan.blocked is not None:
            return await self._stalled(
                plan.blocked.reason, plan.blocked.message, delay=self.refresh_s, owner=plan.blocked.owner
            )
        target = plan.write_version if plan.writes else plan.resolved_version
        version: PromptVersion | None = None
        if target is not None:
            try:
                version = await client.get_version(
                    spec.prompt, target, use_cache=not self._needs_fresh_tags()
                )
            except (VersionNotFound, RegistryNotFound):
                if spec.version is None and plan.writes:
                    # A rollback request to a version that does not exist: refuse it, keep following.
                    kopf.event(
                        self._event_body,
                        type="Warning",
                        reason="RollbackRefused",
                        message=f"rollback to version {target} refused: it does not exist in MLflow",
                    )
                    await self._consume_requests()
                    return PassResult(delay=0.0)
                if spec.version is None and not plan.writes:
                    version = None  # follow mode: alias points at a deleted version
                else:
                    return await self._stalled(
                        Reason.VERSION_NOT_FOUND,
                        f"version {target} of prompt {spec.prompt!r} does not exist in MLflow; "
                        "register it or change spec.version",
                        delay=self.refresh_s,
                    )
        if spec.version is not None and version is not None:
            violation = policy_violation(
                spec.policy.require_version_tags if spec.policy else None, version.tags, version.version
            )
            if violation:
                return await self._stalled(Reason.POLICY_VIOLATION, violation, delay=self.refresh_s)
        if spec.version is None and target is not None and version is None:
            return await self._finish(
                Outcome(
                    ready=False,
                    reason=Reason.VERSION_NOT_FOUND,
                    message=f"alias {spec.alias!r} points at version {target}, which no longer exists in "
                    "MLflow; pods keep the last good prompt",
                    keep_resolution=True,
                ),
                delay=self.refresh_s,
            )
        configmap = None
        if version is not None and spec.projection.enabled:
            try:
                cm_body = self._configmap(version, plan)
            except ProjectionError as exc:
                return await self._stalled(Reason.PROJECTION_TOO_LARGE, str(exc), delay=self.refresh_s)
            configmap = cm_body["metadata"]["name"]
        else:
            cm_body = None
        if plan.writes:
            guessed = self._guess_stored and intend(status, plan, spec=spec) == self.pa.status
            if self._guess_stored:
                METRICS.intent_guesses["adopted" if guessed else "replaced"] += 1
            if not guessed and not await self._record_intent(plan):
                return PassResult(delay=backoff(self.failures), transient_failure=True)
            self._guess_stored = False  # the stored intent is this plan's
            plan = replace(plan, prior=())  # recorded with the intent
        try:
            await self._write_mlflow(client, known, plan, state)
            if cm_body is not None:
                await self._apply_projection(cm_body)
        finally:
            if self._audit is not None:
                await self._audit
        digest = _digest(version) if version is not None else None
        return await self._finish(
            refused_outcome(settled_from_plan(plan, spec, digest=digest, config_map=configmap), self.refusal),
            delay=self._settled_delay(),
            plan=plan,
        )

    async def _pending_landed(self, client: MlflowRegistry, current: int | None) -> bool:
        """Did the pending move reach MLflow although the alias is elsewhere now? (Someone moved it
        while we were down between our MLflow write and our status write.) MLflow's audit tag on
        the target version, written right after our set_alias, says so."""
        intent = self._base.pending_move
        if intent is None or intent.version is None or intent.version == current:
            return False
        try:
            target = await client.get_version(self.pa.spec.prompt, intent.version, use_cache=False)
        except (VersionNotFound, RegistryNotFound):
            return False
        return write_landed(target.tags, self.pa.spec.alias, by=str(self.me), at=intent.time)

    async def _record_intent(self, plan: AliasPlan) -> bool:
        """Write the move to status (pendingMove) before MLflow: no crash can lose it from history."""
        old = self.pa.status  # as stored: `_base`, or a guessed intent that this one replaces
        new = intend(self._base, plan, spec=self.pa.spec)
        try:
            stored = await self.world.kube.patch_status(
                PLURAL, self.namespace, self.name, merge_patch(old.to_dict(), new.to_dict())
            )
        except KubeError as exc:
            log.warning("could not record the pending move of %s/%s: %s", self.namespace, self.name, exc)
            return False
        self.world.remember(stored)
        stage("intent", self.key, plan.write_version)
        self.pa = self.pa.model_copy(update={"status": new})
        return True

    def _needs_fresh_tags(self) -> bool:
        policy = self.pa.spec.policy
        return bool(policy and policy.require_version_tags)

    async def _write_mlflow(
        self, client: MlflowRegistry, known: KnownRegistry, plan: AliasPlan, state: PromptState | None
    ) -> None:
        spec = self.pa.spec
        if plan.claim and state is not None:
            await client.set_prompt_tag(spec.prompt, owner_tag_key(spec.alias), self.me.to_tag())
        if plan.write_version is not None:
            await client.set_alias(spec.prompt, spec.alias, plan.write_version)
            stage("mlflow", self.key, plan.write_version)
            # MLflow keeps no history of alias moves: leave one on the version (best effort).
            replaced = state.aliases.get(spec.alias) if state is not None else None
            tag, value = audit_tag(spec.alias, by=str(self.me), at=self.now, replaced=replaced)
            # Sent beside the ConfigMap apply (awaited in _with_registry): apps get the move one
            # MLflow round trip sooner.
            self._audit = asyncio.ensure_future(
                _best_effort(client.set_version_tag(spec.prompt, plan.write_version, tag, value))
            )
            METRICS.alias_writes[str(plan.history.reason) if plan.history else "Applied"] += 1
            if state is not None:
                aliases = {**state.aliases, spec.alias: plan.write_version}
                tags = dict(state.tags)
                if plan.claim:
                    tags[owner_tag_key(spec.alias)] = self.me.to_tag()
                updated = PromptState(
                    state.name, aliases, tags, state.is_prompt, state.description, state.latest_version
                )
                self.world.snapshots[snapshot_key(client, spec.prompt)] = Snapshot(updated, time.monotonic())
            # The poller will not see this move as a change (the snapshot already has it): wake the
            # other resources of this prompt (e.g. a follower of the same alias) ourselves.
            others = self.world.table.uids_where(endpoint=known.endpoint, prompt=spec.prompt)
            self.world.poke([uid for uid in others if uid != self.uid], fresh=False)
        if plan.release:
            await client.delete_prompt_tag(spec.prompt, owner_tag_key(spec.alias))
        if plan.took_over:
            kopf.event(self._event_body, type="Warning", reason="TookOver", message=plan.took_over)
        if plan.refused:
            kopf.event(self._event_body, type="Warning", reason="RollbackRefused", message=plan.refused)
        await self._consume_requests()

    async def _consume_requests(self) -> None:
        """One-shot requests (like Argo CD's refresh annotation) are removed once handled."""
        handled: dict[str, str | None] = {}
        if rollback_request(self.meta) is not None and self.refusal is None:  # refused: kept, shown
            handled[ROLLBACK_ANNOTATION] = None
        if takeover_requested(self.meta):
            handled[TAKEOVER_ANNOTATION] = None
        if handled:
            self.world.remember(
                await self.world.kube.patch_annotations(PLURAL, self.namespace, self.name, handled)
            )

    def _configmap(self, version: PromptVersion, plan: AliasPlan) -> dict[str, Any]:
        spec = self.pa.spec
        updated = (
            plan.history.time
            if plan.history is not None
            else (self._base.history[-1].time if self._base.history else version.created_at)
        )
        document = render_projection(
            name=spec.prompt,
            alias=spec.alias,
            version=version.version,
            template=version.template,
            response_format=version.response_format,
            model_config=version.model_config,
            tags={k: v for k, v in version.tags.items() if not k.startswith(INTERNAL_TAG_PREFIX)},
            updated=updated,
            experiment=self.world.experiment_projection(self.namespace, self.name),
        )
        return build_configmap(self.namespace, self.name, self.uid, document)

    async def _apply_projection(self, cm_body: Mapping[str, Any]) -> None:
        wanted = cm_body["metadata"]["annotations"][CONTENT_HASH_ANNOTATION]
        known = self.world.projection_hashes.get(self.uid)
        if known == wanted:
            return
        # Unknown means no valid projection exists: start-up read every projection's hash with one
        # LIST (handlers/startup.py). STALE: the ConfigMap watch saw it deleted or edited (an edit
        # may have kept the hash annotation). Either way apply, without reading it first.
        # The hash is set before the apply: the watch event of our own write may arrive before the
        # apply returns, and must not read as someone else's edit (handlers/projections.py).
        self.world.projection_hashes[self.uid] = wanted
        try:
            await self.world.kube.apply_configmap(cm_body)
            stage("configmap", self.key, self.pa.spec.version)
        except BaseException:
            self.world.projection_hashes[self.uid] = STALE
            raise

    # ---- finishing -----------------------------------------------------------------------------

    async def _stalled(
        self, reason: Reason, message: str, *, delay: float, owner: str | None = None
    ) -> PassResult:
        """A permanent problem: Stalled with `reason`, the last good resolution kept."""
        outcome = Outcome(
            ready=False, reason=reason, message=message, stalled=True, owner=owner, keep_resolution=True
        )
        return await self._finish(outcome, delay=delay)

    async def _unavailable(self, message: str) -> PassResult:
        delay = backoff(self.failures)
        result = await self._finish(
            Outcome(
                ready=False,
                reason=Reason.REGISTRY_UNAVAILABLE,
                message=f"{message}; retrying in {delay:.0f}s (pods keep the last good prompt)",
                reconciling=True,
                keep_resolution=True,
            ),
            delay=delay,
        )
        result.transient_failure = True
        return result

    async def _finish(self, outcome: Outcome, *, delay: float, plan: AliasPlan | None = None) -> PassResult:
        old = self.pa.status  # as stored
        # A guessed intent that no write adopted is withdrawn: settled from the status found.
        basis = self._base if self._guess_stored else old
        if self._guess_stored:
            METRICS.intent_guesses["withdrawn"] += 1
        new = settle(basis, outcome, spec=self.pa.spec, generation=self.generation, now=self.now)
        old_dict = old.to_dict()
        new_dict = new.to_dict()
        if worth_writing(old_dict, new_dict, self.refresh_s):
            try:
                stored = await self.world.kube.patch_status(
                    PLURAL, self.namespace, self.name, merge_patch(old_dict, new_dict)
                )
                self.world.remember(stored)
                stage("status", self.key, self.pa.spec.version)
            except KubeError as exc:
                log.warning("could not write status of %s/%s: %s", self.namespace, self.name, exc)
                return PassResult(delay=backoff(self.failures), transient_failure=True)
        self._events(basis, outcome)
        return PassResult(delay=delay)

    @property
    def _event_body(self) -> kopf.Body:
        # kopf only reads apiVersion, kind and metadata to build the Event's involvedObject.
        return cast(kopf.Body, self.body)

    def _events(self, old: PromptAliasStatus, outcome: Outcome) -> None:
        for event in alias_events(old, outcome):
            kopf.event(self._event_body, type=event.type, reason=event.reason, message=event.message)


async def _best_effort(write: Awaitable[None]) -> None:
    """An MLflow write whose failure changes nothing (the audit tag: history lives in status)."""
    with contextlib.suppress(RegistryError):
        await write


def _digest(version: PromptVersion) -> str:
    from promptalias.projection.render import template_digest

    return template_digest(version.template)
