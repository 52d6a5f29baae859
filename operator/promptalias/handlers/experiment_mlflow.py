"""An experiment pass's MLflow I/O: the reads it decides on, and carrying out the alias writes.

Reads go through the World's prompt snapshots (shared with the PromptAlias workers and the
registry poller); every write updates the snapshot, so the poller does not take our own move for a
change. The candidate alias gets our owner tag first (when unmarked), then the alias, then the
audit tag on the version; a promotion of a baseline that follows MLflow moves its alias the same
way. What to write is decided in reconcile/experiment_candidate.py and experiment_promotion.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from promptalias.handlers.metrics import METRICS
from promptalias.handlers.state import Snapshot, World, snapshot_key
from promptalias.reconcile.experiment_candidate import CandidatePlan
from promptalias.reconcile.experiment_promotion import PromotionPlan
from promptalias.reconcile.ownership import Owner, owner_tag_key
from promptalias.registry import (
    MlflowRegistry,
    PromptNotFound,
    PromptState,
    PromptVersion,
    RegistryNotFound,
    VersionNotFound,
)


@dataclass(frozen=True)
class ExperimentRegistry:
    """The registry of one experiment's baseline, as the experiment `me` uses it."""

    world: World
    client: MlflowRegistry
    me: Owner

    async def read_prompt(self, prompt: str, *, fresh: bool, max_age_s: float) -> PromptState | None:
        """The prompt (None: it does not exist), from a young enough snapshot unless `fresh`."""
        key = snapshot_key(self.client, prompt)
        snap = self.world.snapshots.get(key)
        young = snap is not None and time.monotonic() - snap.fetched < max_age_s
        if not fresh and snap is not None and snap.state is not None and young:
            return snap.state
        try:
            state = await self.client.get_prompt(prompt)
        except PromptNotFound:
            return None
        self.world.snapshots[key] = Snapshot(state, time.monotonic())
        return state

    async def read_version(self, prompt: str, version: int) -> PromptVersion | None:
        """The version (None: it does not exist)."""
        try:
            return await self.client.get_version(prompt, version)
        except (VersionNotFound, RegistryNotFound):
            return None

    async def write_candidate(self, state: PromptState, alias: str, plan: CandidatePlan) -> None:
        """Owner tag (when unmarked), the alias, then the audit tag on the version."""
        if plan.write is None:
            return
        if plan.claim:
            await self.client.set_prompt_tag(state.name, owner_tag_key(alias), self.me.to_tag())
        await self.client.set_alias(state.name, alias, plan.write)
        METRICS.alias_writes["CandidateSet"] += 1
        if plan.audit is not None:
            await self.client.set_version_tag(state.name, plan.write, *plan.audit)
        self._remember(state, alias, plan.write, claim=plan.claim)

    async def move_baseline(self, state: PromptState, alias: str, plan: PromotionPlan) -> None:
        """A promotion of a baseline that follows MLflow: its alias, then the audit tag."""
        if plan.move_alias is None:
            return
        await self.client.set_alias(state.name, alias, plan.move_alias)
        METRICS.alias_writes["Promoted"] += 1
        if plan.audit is not None:
            await self.client.set_version_tag(state.name, plan.move_alias, *plan.audit)
        self._remember(state, alias, plan.move_alias, claim=False)

    def _remember(self, state: PromptState, alias: str, version: int, *, claim: bool) -> None:
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
        self.world.snapshots[snapshot_key(self.client, state.name)] = Snapshot(updated, time.monotonic())


__all__ = ["ExperimentRegistry"]
