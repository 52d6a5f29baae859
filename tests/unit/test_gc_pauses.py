"""The garbage-collector pause accounting of the operator (handlers/gc_pauses.py)."""

from __future__ import annotations

import gc

from promptalias.handlers.gc_pauses import GcPauses, freeze_survivors


def test_pauses_are_counted_per_generation() -> None:
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        gc.callbacks.remove(pauses)
    assert pauses.collections[0] >= 1
    assert pauses.collections[2] >= 1
    assert pauses.pause_s[2] > 0
    assert pauses.longest_s[2] <= pauses.pause_s[2]


def test_frozen_objects_are_skipped_by_full_collections() -> None:
    survivors = [[i] for i in range(10_000)]  # tracked containers that outlive the freeze
    try:
        assert freeze_survivors() >= len(survivors)
        assert gc.get_freeze_count() >= len(survivors)
        tracked_after = len(gc.get_objects(generation=2))
        assert tracked_after < len(survivors)  # the frozen ones are in no generation now
    finally:
        gc.unfreeze()
