"""The work queue that schedules PromptAlias passes: deduplicated, grouped by prompt, by priority.

The controller-runtime model (one queue, a fixed number of workers) with one twist: items are
*grouped* (by prompt), and a worker takes every ready item of one group at once. MLflow answers
for a whole prompt in one read (registered-models/get returns all its aliases), so a group's batch
costs one read, and no two workers ever reconcile aliases of the same prompt at the same time
(their optimistic view of the prompt cannot race).

Rules, as in client-go's workqueue:
- an item is in the queue at most once: adding it again keeps the earlier due time and the more
  urgent priority;
- an item being processed that is added again is parked and re-queued when its batch is done (it
  is never processed by two workers at once);
- an item of a group that is being processed waits until that group's batch is done.

Pure and synchronous: time is passed in (monotonic seconds); the asyncio driver is
handlers/alias_queue.py.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from enum import IntEnum


class Priority(IntEnum):
    """Lower runs first."""

    URGENT = 0  # the user asked for something: spec behind its generation, a request annotation
    CHANGED = 1  # something around it changed: MLflow moved, a rival left, a registry came back
    ROUTINE = 2  # periodic re-check, start-up verification of a resource already in sync


@dataclass
class _Item:
    group: str
    due: float
    priority: Priority
    fresh_after: float | None  # the pass must read MLflow no older than this (None: any snapshot)
    seq: int


@dataclass(frozen=True)
class Work:
    """One item handed to a worker."""

    key: str
    fresh_after: float | None


@dataclass(frozen=True)
class Batch:
    """Every ready item of one group; hand it back with `done`."""

    group: str
    items: tuple[Work, ...]


def _merge_fresh(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


@dataclass
class WorkQueue:
    """Keys (e.g. PromptAlias uids) in groups (e.g. prompt names); see the module docstring."""

    _items: dict[str, _Item] = field(default_factory=dict)  # queued (due now or later)
    _delayed: list[tuple[float, int, str]] = field(default_factory=list)  # heap (due, seq, key)
    _ready: list[tuple[int, int, str]] = field(default_factory=list)  # heap (priority, seq, key)
    _ready_keys: dict[str, set[str]] = field(default_factory=dict)  # group -> ready keys
    _active_groups: set[str] = field(default_factory=set)
    _processing: dict[str, str] = field(default_factory=dict)  # key -> group
    _parked: dict[str, _Item] = field(default_factory=dict)  # added while processing
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    # ---- adding --------------------------------------------------------------------------------

    def add(
        self,
        key: str,
        group: str,
        *,
        now: float,
        delay: float = 0.0,
        priority: Priority = Priority.CHANGED,
        fresh_after: float | None = None,
    ) -> None:
        """Queue `key` to run at `now + delay` (earlier if it is already queued earlier)."""
        due = now + max(0.0, delay)
        if key in self._processing:
            parked = self._parked.get(key)
            self._parked[key] = self._merged(parked, group, due, priority, fresh_after)
            return
        old = self._items.get(key)
        if old is not None and old.group != group:
            self.forget(key)
            old = None
        item = self._merged(old, group, due, priority, fresh_after)
        self._items[key] = item
        if old is not None and (old.due, old.priority) == (item.due, item.priority):
            return  # nothing to re-sort (fresh_after lives on the item itself)
        heapq.heappush(self._delayed, (item.due, item.seq, key))

    def _merged(
        self, old: _Item | None, group: str, due: float, priority: Priority, fresh_after: float | None
    ) -> _Item:
        if old is None:
            return _Item(group, due, priority, fresh_after, next(self._seq))
        merged_due = min(old.due, due)
        merged_priority = min(old.priority, priority)
        seq = old.seq if (merged_due, merged_priority) == (old.due, old.priority) else next(self._seq)
        return _Item(group, merged_due, merged_priority, _merge_fresh(old.fresh_after, fresh_after), seq)

    def forget(self, key: str) -> None:
        """Drop `key` (e.g. its object was deleted); a batch already running it is not stopped."""
        item = self._items.pop(key, None)
        self._parked.pop(key, None)
        if item is not None:
            ready = self._ready_keys.get(item.group)
            if ready is not None:
                ready.discard(key)
                if not ready:
                    del self._ready_keys[item.group]
        # Heap entries of a forgotten key are skipped lazily (their seq no longer matches).

    # ---- taking --------------------------------------------------------------------------------

    def _promote(self, now: float) -> None:
        """Move items whose time has come from the delayed heap to the ready heap."""
        while self._delayed and self._delayed[0][0] <= now:
            _due, seq, key = heapq.heappop(self._delayed)
            item = self._items.get(key)
            if item is None or item.seq != seq:
                continue  # stale: forgotten or re-added since
            self._ready_keys.setdefault(item.group, set()).add(key)
            heapq.heappush(self._ready, (int(item.priority), item.seq, key))

    def pop(self, now: float) -> Batch | None:
        """The most urgent ready group that no worker holds, with all its ready items; None if none."""
        self._promote(now)
        skipped: list[tuple[int, int, str]] = []
        batch: Batch | None = None
        while self._ready:
            entry = heapq.heappop(self._ready)
            _priority, seq, key = entry
            item = self._items.get(key)
            if item is None or item.seq != seq or key not in self._ready_keys.get(item.group, ()):
                continue  # stale entry
            if item.group in self._active_groups:
                skipped.append(entry)
                continue
            keys = sorted(self._ready_keys.pop(item.group), key=lambda k: self._items[k].seq)
            works = []
            for member in keys:
                taken = self._items.pop(member)
                self._processing[member] = taken.group
                works.append(Work(member, taken.fresh_after))
            self._active_groups.add(item.group)
            batch = Batch(item.group, tuple(works))
            break
        for entry in skipped:
            heapq.heappush(self._ready, entry)
        return batch

    def done(self, batch: Batch, *, now: float) -> None:
        """The batch is finished: release its group and re-queue what was added meanwhile."""
        self._active_groups.discard(batch.group)
        for work in batch.items:
            self._processing.pop(work.key, None)
            parked = self._parked.pop(work.key, None)
            if parked is not None:
                self.add(
                    work.key,
                    parked.group,
                    now=now,
                    delay=max(0.0, parked.due - now),
                    priority=parked.priority,
                    fresh_after=parked.fresh_after,
                )

    # ---- looking -------------------------------------------------------------------------------

    def next_due(self, now: float) -> float | None:
        """Seconds until something may be ready (0: now), or None when nothing is queued."""
        self._promote(now)
        if any(group not in self._active_groups for group in self._ready_keys):
            return 0.0
        while self._delayed:
            due, seq, key = self._delayed[0]
            item = self._items.get(key)
            if item is None or item.seq != seq:
                heapq.heappop(self._delayed)
                continue
            return max(0.0, due - now)
        return None

    def processing(self, key: str) -> bool:
        return key in self._processing

    def queued(self, key: str) -> bool:
        return key in self._items or key in self._parked

    def due_within(self, now: float, seconds: float) -> int:
        """How many queued items are due within `seconds` (the backlog a dashboard shows)."""
        return sum(1 for item in self._items.values() if item.due <= now + seconds)

    def __len__(self) -> int:
        return len(self._items) + len(self._parked)


__all__ = ["Batch", "Priority", "Work", "WorkQueue"]
