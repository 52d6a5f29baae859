"""Stage timestamps for the propagation breakdown of `make bench` (`PROMPTALIAS_STAGE_LOG=1`).

Each stage a change passes through — the operator's watch event, its pass, the MLflow write, the
ConfigMap apply, the sidecar's watch event and its file swap — logs one line

    stage <name> <key> <version> <CLOCK_MONOTONIC ns>

CLOCK_MONOTONIC is one clock for every process on the machine, so the benchmark lines the stages up
with the moment its patch returned and with the reader's first read of the new version
(benchmarks/stages.py). Off by default; stdlib only (the sidecar imports it).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Final

STAGE_LOG_ENV: Final = "PROMPTALIAS_STAGE_LOG"
ENABLED: Final = os.environ.get(STAGE_LOG_ENV) == "1"

_log = logging.getLogger("promptalias.stages")


def stage(name: str, key: str, version: object) -> None:
    """Log that the change of `key` to `version` reached stage `name` (when enabled)."""
    if ENABLED:
        _log.info("stage %s %s %s %d", name, key, version, time.monotonic_ns())


__all__ = ["ENABLED", "STAGE_LOG_ENV", "stage"]
