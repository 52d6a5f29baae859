"""kopf wiring for PromptExperiment: the index, a worker per experiment fed by raw events, a finalizer.

What runs where: handlers/experiment_split.py keeps the index (which experiment holds which
baseline's split) and publishes the split into the baseline's projection; handlers/experiment_pass.py
carries out one pass (decisions in reconcile/experiment*.py); handlers/experiment_analysis.py runs
spec.analysis inside it. Deleting the experiment takes the split away and removes the candidate
alias from MLflow by the rule both finalizers share (reconcile/deletion.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

import kopf

from promptalias.api.experiment import PromptExperiment
from promptalias.api.promptalias import PromptAlias
from promptalias.api.types import GROUP, VERSION
from promptalias.handlers.experiment_pass import ExperimentPass
from promptalias.handlers.experiment_split import (
    ExperimentState,
    experiment_state,
    poke_experiments_for_prompt,
    preload,
    publish,
)
from promptalias.handlers.finalizers import Finalizer
from promptalias.handlers.resource_pass import PassResult
from promptalias.handlers.scope import in_scope
from promptalias.handlers.state import InvalidRegistryConfig, World, snapshot_key
from promptalias.handlers.worker import WorkerSpec, run_worker
from promptalias.kube import KubeError
from promptalias.reconcile.experiment_index import experiment_entry, hands_over, wants_experiment_pass
from promptalias.reconcile.ownership import Owner
from promptalias.reconcile.registry import KnownRegistry, Unresolved, resolve_registry
from promptalias.registry import PromptNotFound, RegistryError

log = logging.getLogger(__name__)

PLURAL: Final = PromptExperiment.PLURAL
DELETION_TIMEOUT_S: Final = 120.0
PRELOAD_TIMEOUT_S: Final = 10.0


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
        now = experiment_entry(body)
        if now is not None:
            state.entries[uid] = now
    if before is not None and hands_over(before, now):
        state.poke_baseline(before.namespace, before.baseline, but=uid)
    if now is not None and wants_experiment_pass(body):
        state.worker(uid).poke(fresh=True)


@kopf.on.event(GROUP, VERSION, PromptAlias.PLURAL, when=in_scope)
async def baseline_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A baseline changed (created, promoted, resolved, deleted): wake its experiments."""
    meta = event["object"].get("metadata", {})
    experiment_state(memo).poke_baseline(str(meta.get("namespace")), str(meta.get("name")))


# ---- the worker ----------------------------------------------------------------------------------


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


# ---- deletion ------------------------------------------------------------------------------------


@kopf.on.delete(GROUP, VERSION, PLURAL, when=in_scope)
async def experiment_deleted(
    body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, patch: kopf.Patch, retry: int, **_: Any
) -> None:
    """Take the split out of the baseline's projection and remove the candidate alias from MLflow
    (when it still points at the candidate version and no one else owns it)."""
    world: World = memo.world
    state = experiment_state(memo)
    uid = str(meta.get("uid"))
    namespace = str(meta.get("namespace"))
    exp = PromptExperiment.from_body(body)
    spec = exp.spec
    alias = spec.candidate.alias
    publish(world, state, uid, namespace, spec.baseline.name, None)
    finalizer = Finalizer(body, patch, retry, exp, DELETION_TIMEOUT_S)
    if finalizer.abandon(f"candidate alias {alias} left in MLflow"):
        return
    target = await _deletion_target(world, state, uid, namespace, spec.baseline.name)
    if isinstance(target, str):
        finalizer.left_in_mlflow(f"{target}; candidate alias {alias} was not touched")
        return
    known, prompt = target
    try:
        client = await world.client(known)
        plan = await finalizer.remove_alias(
            client,
            prompt=prompt,
            alias=alias,
            wanted=True,
            version=spec.candidate.version,
            me=Owner(world.cluster, namespace, f"promptexperiment/{meta.get('name')}"),
            deleted=lambda current: f"removed candidate alias {alias} (version {current}) of prompt {prompt}",
        )
        if plan.delete or plan.kept:  # ours: the cached state of the prompt is stale now
            world.snapshots.pop(snapshot_key(client, prompt), None)
    except PromptNotFound:
        pass
    except (InvalidRegistryConfig, RegistryError) as exc:
        finalizer.retry_or_give_up(
            exc,
            to=f"remove candidate alias {alias}",
            doing=f"removing candidate alias {alias}",
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
        if (entry := experiment_entry(body)) is not None:
            state.entries[entry.uid] = entry
    try:
        async with asyncio.timeout(PRELOAD_TIMEOUT_S):
            for body in bodies:
                await preload(world, state, body)
    except TimeoutError:
        log.warning(
            "preloading experiment splits took over %ss; the workers publish the rest", PRELOAD_TIMEOUT_S
        )


__all__ = [
    "ExperimentPass",
    "experiment_deleted",
    "experiment_event",
    "experiment_state",
    "experiment_worker",
    "poke_experiments_for_prompt",
    "preload_experiments",
]
