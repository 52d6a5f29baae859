"""Status writes (reconcile/status_patch.py): the merge patch, and whether a new status is worth a write."""

from __future__ import annotations

from typing import Any

import pytest

from promptalias.api.experiment import AnalysisDecision, AnalysisStatus
from promptalias.reconcile.status_patch import merge_patch, worth_writing

PENDING = {"version": 3, "reason": "Rollback", "previousVersion": 2}


@pytest.mark.parametrize(
    ("name", "old", "new", "patch"),
    [
        ("unchanged", {"a": 1}, {"a": 1}, {"a": 1}),
        ("added", {}, {"a": 1}, {"a": 1}),
        ("gone", {"a": 1, "b": 2}, {"a": 1}, {"a": 1, "b": None}),
        (
            "gone inside an object",
            {"p": PENDING},
            {"p": {"version": 4}},
            {"p": {"version": 4, "reason": None, "previousVersion": None}},
        ),
        ("object replaced by a scalar", {"p": PENDING}, {"p": 4}, {"p": 4}),
        ("scalar replaced by an object", {"p": 4}, {"p": {"version": 4}}, {"p": {"version": 4}}),
        ("lists are replaced whole", {"c": [1, 2]}, {"c": [1]}, {"c": [1]}),
        ("a null in new stays null", {"a": 1}, {"a": None}, {"a": None}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_merge_patch(name: str, old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_patch(old, new) == patch


def test_merge_patch_of_an_analysis_nulls_what_went_away() -> None:
    old = AnalysisStatus.model_validate(
        {
            "looks": 1,
            "decision": "Continue",
            "reason": "x",
            "dryRun": False,
            "sampleRatio": {"baseline": 1, "candidate": 1, "observedShare": 0.5},
        }
    )
    new = AnalysisStatus(looks=2, decision=AnalysisDecision.HOLD, reason="y", dry_run=False)
    patch = merge_patch(old.to_dict(), new.to_dict())
    assert patch["sampleRatio"] is None
    assert patch["looks"] == 2
    assert merge_patch({}, new.to_dict()) == new.to_dict()


def synced(at: str | None, **rest: Any) -> dict[str, Any]:
    return {"resolvedVersion": 3, **({"lastSyncTime": at} if at is not None else {}), **rest}


@pytest.mark.parametrize(
    ("name", "old", "new", "refresh_s", "expected"),
    [
        ("identical", synced("2026-12-01T09:00:00Z"), synced("2026-12-01T09:00:00Z"), 60, False),
        (
            "only a newer sync, within a refresh",
            synced("2026-12-01T09:00:00Z"),
            synced("2026-12-01T09:00:59Z"),
            60,
            False,
        ),
        (
            "only a newer sync, a refresh later",
            synced("2026-12-01T09:00:00Z"),
            synced("2026-12-01T09:01:00Z"),
            60,
            True,
        ),
        (
            "a refresh of 0 still waits a second",
            synced("2026-12-01T09:00:00Z"),
            synced("2026-12-01T09:00:00.5Z"),
            0,
            False,
        ),
        (
            "anything else changed",
            synced("2026-12-01T09:00:00Z"),
            synced("2026-12-01T09:00:00Z", resolvedVersion=4),
            60,
            True,
        ),
        ("first sync time", synced(None), synced("2026-12-01T09:00:00Z"), 60, True),
        ("an unreadable sync time", synced("yesterday"), synced("2026-12-01T09:00:00Z"), 60, True),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_worth_writing(
    name: str, old: dict[str, Any], new: dict[str, Any], refresh_s: float, expected: bool
) -> None:
    assert worth_writing(old, new, refresh_s) is expected
