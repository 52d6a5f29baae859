"""Which experiment splits which baseline, and publishing that split into the baseline's projection.

The experiments are indexed (kept in kopf's memo beside the World; entries and the split rule in
reconcile/experiment_index.py) so that pokes reach the right workers and one experiment per
baseline holds the split: the oldest running one, by the same rule as alias claims. A published
split is the `experiment` block in `world.experiments[(namespace, baseline)]`; the baseline's
PromptAlias worker renders it into the projection ConfigMap, so publishing pokes that worker
whenever the block changes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptalias.api.experiment import PromptExperiment
from promptalias.handlers.state import InvalidRegistryConfig, Worker, World
from promptalias.reconcile.experiment import Progress
from promptalias.reconcile.experiment_candidate import projection_block
from promptalias.reconcile.experiment_index import ExperimentEntry, split_holder
from promptalias.reconcile.registry import KnownRegistry
from promptalias.registry import RegistryError

log = logging.getLogger(__name__)


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

    def poke_baseline(self, namespace: str, baseline: str, *, but: str | None = None) -> None:
        """Wake the experiments of one baseline (all, or all but `but`)."""
        self.poke(
            [
                entry.uid
                for entry in self.entries.values()
                if (entry.namespace, entry.baseline) == (namespace, baseline) and entry.uid != but
            ],
            fresh=False,
        )

    def holder(self, namespace: str, baseline: str) -> ExperimentEntry | None:
        """The experiment that owns a baseline's split: the oldest running one."""
        uid = split_holder(self.entries.values(), namespace, baseline)
        return self.entries.get(uid) if uid is not None else None


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
    for uid in world.table.uids_where(endpoint=endpoint, prompt=prompt):
        alias = world.aliases[uid]
        wanted.add((alias.namespace, alias.name))
    state.poke(
        [entry.uid for entry in state.entries.values() if (entry.namespace, entry.baseline) in wanted],
        fresh=False,
    )


def baseline_uids(world: World, namespace: str, name: str) -> list[str]:
    """The uids of the PromptAlias `namespace/name` (one, or none)."""
    return [uid for uid in world.table.uids_where(namespace=namespace) if world.aliases[uid].name == name]


def publish(
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
        world.poke(baseline_uids(world, *stale), fresh=False)
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
        world.poke(baseline_uids(world, namespace, baseline), fresh=False)


async def preload(world: World, state: ExperimentState, body: Mapping[str, Any]) -> None:
    """At start-up: publish a running split from the stored status alone (the worker confirms it)."""
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
        (world.aliases[u] for u in baseline_uids(world, namespace, exp.spec.baseline.name)),
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
    "ExperimentState",
    "baseline_uids",
    "experiment_state",
    "poke_experiments_for_prompt",
    "preload",
    "publish",
]
