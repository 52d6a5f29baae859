"""The experiments this process knows, as the split rule and the pokes need them (pure).

One experiment per baseline holds the split: the oldest running one, by the same rule as alias
claims (`reconcile.ownership.winner`), each experiment claiming the split of its baseline.
handlers/experiment_split.py keeps the entries (fed by `experiment_entry` of each watch event).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from promptalias.api.experiment import ExperimentPhase
from promptalias.reconcile.ownership import Claim, winner
from promptalias.reconcile.timestamps import parse_timestamp
from promptalias.vocabulary import EXPERIMENT_REQUEST_ANNOTATIONS

SPLIT: Final = "promptalias.io/split"
"""The alias part of an experiment's claim: what it claims is the split of one baseline."""


@dataclass
class ExperimentEntry:
    """What routing of pokes and the one-experiment-per-baseline rule need to know."""

    uid: str
    namespace: str
    name: str
    baseline: str
    created: datetime
    terminal: bool
    deleting: bool

    def claim(self) -> Claim:
        """The entry as a claim on its baseline's split: only a running experiment contends."""
        return Claim(
            endpoint=self.namespace,
            prompt=self.baseline,
            alias=SPLIT,
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            created=self.created,
            writes=not self.terminal and not self.deleting,
        )


def experiment_entry(body: Mapping[str, Any]) -> ExperimentEntry | None:
    """The index entry of an experiment body (None without a baseline name)."""
    meta = body.get("metadata", {})
    spec = body.get("spec") or {}
    baseline = (spec.get("baseline") or {}).get("name")
    if not baseline:
        return None
    phase = (body.get("status") or {}).get("phase")
    return ExperimentEntry(
        uid=str(meta.get("uid")),
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        baseline=str(baseline),
        created=parse_timestamp(meta.get("creationTimestamp")) or datetime.now(UTC),
        terminal=phase in (ExperimentPhase.PROMOTED, ExperimentPhase.ABORTED),
        deleting=meta.get("deletionTimestamp") is not None,
    )


def split_holder(entries: Iterable[ExperimentEntry], namespace: str, baseline: str) -> str | None:
    """The uid of the experiment that owns a baseline's split: the oldest running one."""
    found = winner((entry.claim() for entry in entries), (namespace, baseline, SPLIT))
    return found.uid if found is not None else None


def hands_over(before: ExperimentEntry, now: ExperimentEntry | None) -> bool:
    """Did this event end `before`'s claim (finished, deleting or gone)? A holder that does hands the
    baseline to the next experiment in line, so they must look again."""
    return now is None or (now.terminal, now.deleting) != (before.terminal, before.deleting)


def wants_experiment_pass(body: Mapping[str, Any]) -> bool:
    """The user asked for something: a spec not yet handled, or a request annotation waiting."""
    meta = body.get("metadata", {})
    status = body.get("status") or {}
    annotations = set(meta.get("annotations") or {})
    return status.get("observedGeneration") != meta.get("generation") or bool(
        annotations & set(EXPERIMENT_REQUEST_ANNOTATIONS)
    )


__all__ = [
    "SPLIT",
    "ExperimentEntry",
    "experiment_entry",
    "hands_over",
    "split_holder",
    "wants_experiment_pass",
]
