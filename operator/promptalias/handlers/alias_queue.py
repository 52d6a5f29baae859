"""The PromptAlias workers: a fixed number of tasks take batches from the World's work queue.

Why a queue and not a daemon per object: at thousands of PromptAliases, per-object daemons ran
thousands of passes at once, each with its own apiserver read and MLflow request, so requests
timed out waiting in our own event loop rather than in MLflow (issue 14). Here at most
`PROMPTALIAS_WORKERS` passes run at once, a batch holds every ready PromptAlias of one prompt (one
MLflow read serves them all, reconcile/workqueue.py), and a pass decides on the newest body the
World holds (watch events and the answers to our own writes, by resourceVersion) instead of a
quorum read.

kopf still tells us *which* objects this process may serve: a tiny per-object daemon holds a
lease while kopf runs it. kopf stops daemons when the operator pauses (peering: another replica
is active) and when an object is being deleted; the workers only run passes for leased objects.
The pass runs in the lease's context, so `kopf.event` posts Events as it does in any handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import time
from typing import Final

import kopf

from promptalias.handlers.alias_reconciler import AliasPass
from promptalias.handlers.metrics import METRICS
from promptalias.handlers.resource_pass import PassResult
from promptalias.handlers.state import World
from promptalias.reconcile.alias_requests import wants_pass
from promptalias.reconcile.backoff import backoff
from promptalias.reconcile.workqueue import Priority, Work

log = logging.getLogger(__name__)

WORKERS_ENV: Final = "PROMPTALIAS_WORKERS"
DEFAULT_WORKERS: Final = 8
RELEASE_TIMEOUT_S: Final = 10.0  # how long a lease's end waits for its pass (kopf's cancellation_timeout)
PROGRESS_EVERY_S: Final = 5.0


def workers_from_environment() -> int:
    raw = os.environ.get(WORKERS_ENV, "")
    try:
        value = int(raw) if raw else DEFAULT_WORKERS
    except ValueError:
        log.warning("%s=%r is not a number; using %d workers", WORKERS_ENV, raw, DEFAULT_WORKERS)
        return DEFAULT_WORKERS
    return max(1, value)


class AliasWorkers:
    """Leases (which objects this process serves), the worker tasks, and per-object failures."""

    def __init__(self, world: World, workers: int) -> None:
        self.world = world
        self.size = workers
        self._leases: dict[str, contextvars.Context] = {}
        self._failures: dict[str, int] = {}
        self._running: dict[str, asyncio.Event] = {}  # uid -> set when its pass ends
        self._unleased: dict[str, float | None] = {}  # came due unleased -> its fresh_after
        self._tasks: list[asyncio.Task[None]] = []
        self._reconciled: set[str] = set()  # start-up progress: objects with one pass done
        self._progress_logged = 0.0

    # ---- leases (kopf daemons) -----------------------------------------------------------------

    async def lease(self, uid: str, stopped: kopf.DaemonStopped) -> None:
        """Serve `uid` until kopf stops its daemon; then wait for a pass in flight to end."""
        self._leases[uid] = contextvars.copy_context()
        body = self.world.bodies.get(uid)
        urgent = body is not None and wants_pass(body)
        # A pass that came due before kopf leased the object keeps its demand for a fresh read (at
        # start-up: one read after the listing serves every alias of a prompt, not one per lease).
        priority = Priority.URGENT if urgent else Priority.ROUTINE
        if uid in self._unleased:
            fresh_after = self._unleased.pop(uid)
            self.world.enqueue(uid, priority=priority, fresh=fresh_after is not None, since=fresh_after)
        elif self.world.queue.queued(uid):
            self.world.enqueue(uid, priority=priority, fresh=False)  # keeps the demand it has
        else:
            self.world.enqueue(uid, priority=priority, fresh=urgent)
        try:
            await stopped.wait()
        finally:
            self._leases.pop(uid, None)
            await self.idle(uid)

    async def idle(self, uid: str) -> None:
        """Return once no pass of `uid` is running (or after RELEASE_TIMEOUT_S)."""
        running = self._running.get(uid)
        if running is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELEASE_TIMEOUT_S):
                    await running.wait()

    def served(self, uid: str) -> bool:
        return uid in self._leases

    def forget(self, uid: str) -> None:
        self._failures.pop(uid, None)
        self._unleased.pop(uid, None)
        self._reconciled.discard(uid)

    # ---- workers -------------------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self.size):
            self._tasks.append(asyncio.create_task(self._work(), name=f"promptalias-worker-{n}"))
        log.info("%d PromptAlias workers started", self.size)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _work(self) -> None:
        queue = self.world.queue
        changed = self.world.queue_changed
        while True:
            changed.clear()
            batch = queue.pop(time.monotonic())
            if batch is None:
                wait = queue.next_due(time.monotonic())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await changed.wait()
                continue
            try:
                for work in batch.items:
                    await self._one(work)
            finally:
                queue.done(batch, now=time.monotonic())
                changed.set()  # items parked behind this batch may be ready now
            self._progress()

    async def _one(self, work: Work) -> None:
        uid = work.key
        body = self.world.bodies.get(uid)
        context = self._leases.get(uid)
        if body is None or uid not in self.world.aliases:
            return  # gone
        if context is None:  # not leased (yet, or paused): the lease queues it again
            self._unleased[uid] = work.fresh_after
            return
        if body.get("metadata", {}).get("deletionTimestamp"):
            return
        failures = self._failures.get(uid, 0)
        running = self._running[uid] = asyncio.Event()
        started = time.monotonic()
        try:
            one_pass = AliasPass(self.world, body, fresh_after=work.fresh_after, failures=failures)
            result: PassResult = await asyncio.create_task(one_pass.run(), context=context)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconcile of PromptAlias %s failed unexpectedly", uid)
            METRICS.observe("PromptAlias", "error", time.monotonic() - started)
            result = PassResult(delay=backoff(failures), transient_failure=True)
        else:
            METRICS.observe(
                "PromptAlias", "retry" if result.transient_failure else "done", time.monotonic() - started
            )
        finally:
            running.set()
            self._running.pop(uid, None)
        self._failures[uid] = failures + 1 if result.transient_failure else 0
        if not self._failures[uid]:
            del self._failures[uid]
        self._reconciled.add(uid)
        # After a failure the next pass reads MLflow anew; after success a snapshot is good enough.
        self.world.enqueue(uid, priority=Priority.ROUTINE, fresh=result.transient_failure, delay=result.delay)

    def _progress(self) -> None:
        """A log line every few seconds while objects wait for their first pass (start-up)."""
        total = len(self.world.aliases)
        done = len(self._reconciled)
        METRICS.queue_depth = self.world.queue.due_within(time.monotonic(), 0.0)
        METRICS.aliases_reconciled = done
        METRICS.aliases_known = total
        now = time.monotonic()
        if done < total and now - self._progress_logged >= PROGRESS_EVERY_S:
            self._progress_logged = now
            log.info(
                "reconciled %d of %d PromptAliases (%d due now, %d leased by kopf)",
                done,
                total,
                METRICS.queue_depth,
                len(self._leases),
            )


__all__ = [
    "DEFAULT_WORKERS",
    "WORKERS_ENV",
    "AliasWorkers",
    "workers_from_environment",
]
