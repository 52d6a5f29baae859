"""Where the operator's memory goes: `PROMPTALIAS_TRACEMALLOC=<frames>` logs the largest Python
allocation sites every 30 s (tracemalloc; it slows the operator, so it is off by default).

Used by `make bench`'s scale section (BENCH_SCALE_TRACEMALLOC=1) to say where the RSS of thousands
of PromptAliases goes: Python objects (by the module that allocated them) against the rest of
the RSS (interpreter, shared libraries, malloc arenas).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tracemalloc
from typing import Any, Final

import kopf

log = logging.getLogger(__name__)

TRACEMALLOC_ENV: Final = "PROMPTALIAS_TRACEMALLOC"
EVERY_S: Final = 30.0
TOP: Final = 15


def _report() -> str:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__),)
    )
    by_file = snapshot.statistics("filename")
    by_line = snapshot.statistics("lineno")
    total = sum(stat.size for stat in by_file)
    _current, peak = tracemalloc.get_traced_memory()
    lines = [
        f"tracemalloc: {total / 2**20:.1f} MiB of Python allocations (peak {peak / 2**20:.1f} MiB); "
        "largest files:"
    ]
    lines += [f"  {stat.size / 2**20:7.1f} MiB  {stat.traceback[0].filename}" for stat in by_file[:TOP]]
    lines.append("largest lines:")
    lines += [
        f"  {stat.size / 2**20:7.1f} MiB  {stat.traceback[0].filename}:{stat.traceback[0].lineno}"
        for stat in by_line[:TOP]
    ]
    return "\n".join(lines)


async def _log_forever() -> None:
    while True:
        await asyncio.sleep(EVERY_S)
        log.info("%s", _report())


@kopf.on.startup()
async def trace_memory(memo: kopf.Memo, **_: Any) -> None:
    frames = os.environ.get(TRACEMALLOC_ENV, "")
    if not frames:
        return
    tracemalloc.start(int(frames) if frames.isdigit() else 1)
    memo.tracemalloc_task = asyncio.create_task(_log_forever(), name="tracemalloc-report")


@kopf.on.cleanup()
async def stop_tracing(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = getattr(memo, "tracemalloc_task", None)
    if task is None:
        return
    log.info("%s", _report())
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    tracemalloc.stop()
