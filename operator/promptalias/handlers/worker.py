"""The loop a PromptExperiment daemon runs: read the object, one reconcile pass, sleep until poked.

Experiments are few (one per A/B test) and long-lived, so each has its own daemon; PromptAliases,
which come in thousands, share the work queue of handlers/alias_queue.py instead. The subtle
parts — a quorum read instead of kopf's possibly stale live body, backoff, and waking on a poke or
on stop — live here once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import kopf

from promptalias.handlers.metrics import METRICS
from promptalias.handlers.state import Worker, World
from promptalias.kube import KubeError, NotFound
from promptalias.reconcile.backoff import MAX_BACKOFF_S as MAX_BACKOFF_S  # noqa: PLC0414 - re-export
from promptalias.reconcile.backoff import backoff as backoff  # noqa: PLC0414 - reconcile/backoff.py

log = logging.getLogger(__name__)


class PassOutcome(Protocol):
    delay: float
    transient_failure: bool


@dataclass(frozen=True)
class WorkerSpec:
    kind: str
    plural: str
    # (snapshot body, fresh, failures) -> outcome of one pass
    run_pass: Callable[[Mapping[str, Any], bool, int], Awaitable[PassOutcome]]


async def run_worker(
    world: World, worker: Worker, spec: WorkerSpec, body: kopf.Body, stopped: kopf.DaemonStopped
) -> None:
    failures = 0
    while not stopped:
        fresh, worker.fresh = worker.fresh, False
        worker.wake.clear()
        meta = body.get("metadata", {})
        try:
            # A quorum read, not kopf's live body: the body may not show our own last status write
            # yet, and deciding on a stale status would record a move twice.
            snapshot: dict[str, Any] | None = await world.kube.get_custom(
                spec.plural, meta.get("namespace"), str(meta.get("name"))
            )
        except NotFound:
            return
        except KubeError as exc:
            log.warning("cannot read %s %s: %s", spec.kind, worker.uid, exc)
            snapshot = None
        if snapshot is not None and snapshot.get("metadata", {}).get("deletionTimestamp"):
            return
        if snapshot is None:
            failures += 1
            delay = backoff(failures)
        else:
            started = time.monotonic()
            try:
                result = await spec.run_pass(snapshot, fresh, failures)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile of %s %s failed unexpectedly", spec.kind, worker.uid)
                METRICS.observe(spec.kind, "error", time.monotonic() - started)
                failures += 1
                delay = backoff(failures)
                worker.fresh = True
            else:
                METRICS.observe(
                    spec.kind, "retry" if result.transient_failure else "done", time.monotonic() - started
                )
                failures = failures + 1 if result.transient_failure else 0
                delay = result.delay
        if worker.wake.is_set():
            continue
        waiter = asyncio.ensure_future(worker.wake.wait())
        stopper = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait({waiter, stopper}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, stopper):
                task.cancel()
        if not worker.wake.is_set():
            worker.fresh = worker.fresh or failures > 0
