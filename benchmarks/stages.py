"""Where the propagation time goes: the stage lines of one run, lined up per flip.

The operator and the sidecar run with PROMPTALIAS_STAGE_LOG=1 (operator/promptalias/stages.py) and
log `stage <name> <key> <version> <monotonic ns>` at each step. For each counted CR flip (the
version, the patch's start and return, the reader's first read of the new version) this takes
the first line of each stage after the patch started, and reports the median time of each stage
after the patch returned, and each step's own share (the median of stage - previous stage).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The order a change passes through: operator (watch event, queue, MLflow read, pending move in
# status, alias POST, ConfigMap apply, final status), then the sidecar (watch event, file swap).
OPERATOR_STAGES = ("event", "pass", "read", "intent", "mlflow", "configmap", "status")
SIDECAR_STAGES = ("watch", "written")
STAGE_LINE = re.compile(r"stage (\w+) (\S+) (\S+) (\d+)")


@dataclass(frozen=True)
class Flip:
    version: int
    start_ns: int  # the patch call started
    returned_ns: int  # the patch call returned
    read_ns: int | None  # the reader's first read of `version`


@dataclass(frozen=True)
class StageLine:
    name: str
    key: str
    version: str
    ns: int


def parse(path: Path) -> list[StageLine]:
    lines: list[StageLine] = []
    if not path.exists():
        return lines
    for text in path.read_text(errors="replace").splitlines():
        if (found := STAGE_LINE.search(text)) is not None:
            name, key, version, ns = found.groups()
            lines.append(StageLine(name, key, version, int(ns)))
    return lines


def _first(lines: list[StageLine], name: str, after: int, before: int, version: str | None) -> int | None:
    for line in lines:
        if line.name == name and after <= line.ns <= before and (version is None or line.version == version):
            return line.ns
    return None


def breakdown(
    flips: list[Flip], operator: list[StageLine], sidecar: list[StageLine], key: str
) -> dict[str, Any]:
    """Median ms after the patch returned, per stage, and per step (stage - the one before)."""
    mine = [line for line in operator if line.key == key]
    per_stage: dict[str, list[float]] = {
        name: [] for name in (*OPERATOR_STAGES, *SIDECAR_STAGES, "read_by_app")
    }
    per_step: dict[str, list[float]] = {name: [] for name in per_stage}
    for flip in flips:
        if flip.read_ns is None:
            continue
        times: dict[str, int | None] = {}
        for name in OPERATOR_STAGES:
            # "pass" and "read" log spec.version, as the later stages log the version written.
            times[name] = _first(mine, name, flip.start_ns, flip.read_ns, str(flip.version))
        after_apply = times.get("configmap") or flip.start_ns
        for name in SIDECAR_STAGES:
            wanted = str(flip.version) if name == "written" else None
            times[name] = _first(sidecar, name, after_apply, flip.read_ns, wanted)
        times["read_by_app"] = flip.read_ns
        previous = flip.returned_ns
        # In time order: the sidecar's watch event may come before the operator's final status.
        for name, at in sorted(((n, t) for n, t in times.items() if t is not None), key=lambda item: item[1]):
            per_stage[name].append((at - flip.returned_ns) / 1e6)
            per_step[name].append((at - previous) / 1e6)
            previous = at
    return {
        "n": sum(1 for flip in flips if flip.read_ns is not None),
        "stages": [
            {
                "stage": name,
                "n": len(per_stage[name]),
                "after_patch_ms_p50": statistics.median(per_stage[name]) if per_stage[name] else None,
                "step_ms_p50": statistics.median(per_step[name]) if per_step[name] else None,
            }
            for name in per_stage
        ],
    }


STAGE_MEANING = {
    "event": "operator's watch event for the new generation (kopf → alias_event → queue)",
    "pass": "a queue worker starts the pass",
    "read": "MLflow prompt read (registered-models/get, all aliases)",
    "intent": "pending move written to status (before MLflow: history never loses a move)",
    "mlflow": "alias POST returned (MLflow committed)",
    "configmap": "projection ConfigMap applied (server-side apply returned)",
    "status": "final status written",
    "watch": "sidecar's watch event for the ConfigMap",
    "written": "sidecar swapped the file (atomic ..data rename)",
    "read_by_app": "the app's first load_prompt of the new version (1 ms polling)",
}


def markdown(data: dict[str, Any]) -> list[str]:
    lines = [
        "| stage | what | after the patch returned (p50) | this step (p50) |",
        "|---|---|---|---|",
    ]
    for row in data["stages"]:
        after, step = row["after_patch_ms_p50"], row["step_ms_p50"]
        lines.append(
            f"| {row['stage']} | {STAGE_MEANING.get(row['stage'], '')} | "
            f"{'-' if after is None else f'{after:.1f} ms'} | {'-' if step is None else f'{step:.1f} ms'} |"
        )
    return lines


__all__ = ["OPERATOR_STAGES", "SIDECAR_STAGES", "Flip", "StageLine", "breakdown", "markdown", "parse"]
