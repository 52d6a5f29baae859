"""The operator's garbage-collector pauses: kept short, and measured.

A full (generation 2) collection walks every tracked Python object: with kopf, the kubernetes and
pydantic models and aiohttp loaded that is about 80,000 objects before the first resource, and one
walk took 35-44 ms on the benchmark machine. It runs on the event loop, so it stalls whichever pass
is in flight: a tail-latency spike for a spec change that happens to meet it. After start-up (the
imports, the settings, the preload of every resource) the operator collects once and freezes what
is left (`gc.freeze()`): those objects live for the whole process, and later collections skip them.

Pauses are counted by generation (`promptalias_gc_collections_total`,
`promptalias_gc_pause_seconds_total`, `promptalias_gc_pause_longest_seconds`) and, with
`PROMPTALIAS_STAGE_LOG=1`, each full collection is logged beside the stage lines.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from typing import Any, Final

from promptalias.stages import ENABLED as STAGE_LOG

log = logging.getLogger(__name__)
_stage_log = logging.getLogger("promptalias.stages")

FULL: Final = 2


class GcPauses:
    """Collections and their pause time per generation (fed by `gc.callbacks`)."""

    def __init__(self) -> None:
        self.collections: Counter[int] = Counter()
        self.pause_s: dict[int, float] = {}
        self.longest_s: dict[int, float] = {}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = int(info.get("generation", 0))
        pause = time.perf_counter() - self._started
        self.collections[generation] += 1
        self.pause_s[generation] = self.pause_s.get(generation, 0.0) + pause
        self.longest_s[generation] = max(self.longest_s.get(generation, 0.0), pause)
        if generation == FULL and STAGE_LOG:
            _stage_log.info("gc %d %.2f ms %d", generation, pause * 1000, time.monotonic_ns())


PAUSES = GcPauses()


def watch_pauses() -> None:
    """Count every collection from now on (idempotent)."""
    if PAUSES not in gc.callbacks:
        gc.callbacks.append(PAUSES)


def freeze_survivors() -> int:
    """Collect once, then move every object still alive out of the collector's way; how many."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze %d long-lived objects: full collections skip them from now on", frozen)
    return frozen
