"""The PromptAlias work queue (reconcile/workqueue.py): dedup, groups, priorities, parking, delays."""

from __future__ import annotations

import random

import pytest

from promptalias.reconcile.workqueue import Batch, Priority, WorkQueue


def keys(batch: Batch | None) -> list[str]:
    assert batch is not None
    return [work.key for work in batch.items]


def test_an_empty_queue_has_nothing_due() -> None:
    q = WorkQueue()
    assert q.pop(0.0) is None
    assert q.next_due(0.0) is None
    assert len(q) == 0


def test_a_group_comes_out_whole_one_read_serves_every_alias_of_a_prompt() -> None:
    q = WorkQueue()
    for key in ("a1", "a2", "a3"):
        q.add(key, "prompt-a", now=0.0)
    q.add("b1", "prompt-b", now=0.0)
    first = q.pop(0.0)
    assert first is not None
    assert first.group == "prompt-a"
    assert keys(first) == ["a1", "a2", "a3"]  # in the order they were added
    assert keys(q.pop(0.0)) == ["b1"]
    assert q.pop(0.0) is None


def test_adding_twice_queues_once_with_the_earlier_time_and_the_more_urgent_priority() -> None:
    q = WorkQueue()
    q.add("x", "g", now=0.0, delay=30.0, priority=Priority.ROUTINE)
    q.add("x", "g", now=0.0, delay=5.0, priority=Priority.URGENT)
    q.add("x", "g", now=0.0, delay=60.0, priority=Priority.ROUTINE)
    assert len(q) == 1
    assert q.pop(4.9) is None
    assert q.next_due(4.9) == pytest.approx(0.1)
    assert keys(q.pop(5.0)) == ["x"]


def test_urgent_items_run_before_routine_ones_whatever_their_order() -> None:
    q = WorkQueue()
    q.add("routine", "g1", now=0.0, priority=Priority.ROUTINE)
    q.add("changed", "g2", now=0.0, priority=Priority.CHANGED)
    q.add("urgent", "g3", now=0.0, priority=Priority.URGENT)
    assert [keys(q.pop(0.0)) for _ in range(3)] == [["urgent"], ["changed"], ["routine"]]


def test_raising_the_priority_of_a_ready_item_moves_it_forward() -> None:
    q = WorkQueue()
    q.add("a", "g1", now=0.0, priority=Priority.ROUTINE)
    q.add("b", "g2", now=0.0, priority=Priority.CHANGED)
    q.next_due(0.0)  # both ready
    q.add("a", "g1", now=0.0, priority=Priority.URGENT)
    assert keys(q.pop(0.0)) == ["a"]
    assert keys(q.pop(0.0)) == ["b"]


def test_a_group_being_processed_is_not_handed_to_a_second_worker() -> None:
    q = WorkQueue()
    q.add("a1", "prompt-a", now=0.0)
    held = q.pop(0.0)
    q.add("a2", "prompt-a", now=0.0)  # a new alias of the same prompt arrives meanwhile
    q.add("b1", "prompt-b", now=0.0)
    assert keys(q.pop(0.0)) == ["b1"]  # prompt-a is held: the other worker takes prompt-b
    assert q.pop(0.0) is None
    assert q.next_due(0.0) is None or q.next_due(0.0) == 0.0
    assert held is not None
    q.done(held, now=1.0)
    assert keys(q.pop(1.0)) == ["a2"]


def test_an_item_added_while_it_is_processed_runs_again_after_its_batch() -> None:
    q = WorkQueue()
    q.add("x", "g", now=0.0, fresh_after=None)
    batch = q.pop(0.0)
    assert batch is not None
    assert q.processing("x")
    q.add("x", "g", now=0.5, priority=Priority.URGENT, fresh_after=0.5)
    assert q.pop(0.5) is None  # never twice at once
    assert q.queued("x")
    q.done(batch, now=1.0)
    again = q.pop(1.0)
    assert again is not None
    assert again.items[0].key == "x"
    assert again.items[0].fresh_after == 0.5  # the later change wants a read made after it


def test_requeue_after_a_pass_waits_for_its_delay() -> None:
    q = WorkQueue()
    q.add("x", "g", now=0.0)
    batch = q.pop(0.0)
    assert batch is not None
    q.done(batch, now=0.1)
    q.add("x", "g", now=0.1, delay=600.0, priority=Priority.ROUTINE)
    assert q.pop(599.0) is None
    assert q.next_due(599.0) == pytest.approx(1.1)
    assert keys(q.pop(600.1)) == ["x"]


def test_a_poke_brings_a_sleeping_item_forward() -> None:
    q = WorkQueue()
    q.add("x", "g", now=0.0, delay=600.0, priority=Priority.ROUTINE)
    q.add("x", "g", now=10.0, priority=Priority.CHANGED, fresh_after=10.0)
    batch = q.pop(10.0)
    assert batch is not None
    assert batch.items[0].fresh_after == 10.0


def test_fresh_after_keeps_the_latest_demand() -> None:
    q = WorkQueue()
    q.add("x", "g", now=0.0, fresh_after=3.0)
    q.add("x", "g", now=0.0, fresh_after=None)
    q.add("x", "g", now=0.0, fresh_after=2.0)
    batch = q.pop(0.0)
    assert batch is not None
    assert batch.items[0].fresh_after == 3.0


def test_forget_drops_a_queued_or_parked_item() -> None:
    q = WorkQueue()
    q.add("gone", "g", now=0.0)
    q.add("kept", "g", now=0.0)
    q.forget("gone")
    assert keys(q.pop(0.0)) == ["kept"]
    q.add("kept", "g", now=0.0)  # parked (processing)
    q.forget("kept")
    assert not q.queued("kept")


def test_an_item_that_changes_group_moves_with_it() -> None:
    q = WorkQueue()
    q.add("x", "old-prompt", now=0.0)
    q.add("x", "new-prompt", now=0.0)
    batch = q.pop(0.0)
    assert batch is not None
    assert batch.group == "new-prompt"
    assert q.pop(0.0) is None


def test_due_within_counts_the_backlog() -> None:
    q = WorkQueue()
    q.add("a", "g", now=0.0)
    q.add("b", "g", now=0.0, delay=5.0)
    q.add("c", "g", now=0.0, delay=500.0)
    assert q.due_within(0.0, 10.0) == 2
    assert len(q) == 3


def test_random_operations_keep_every_invariant() -> None:
    """A model check: whatever the order of adds, pops, dones and forgets, a key is never handed
    out twice at once, a group never to two workers, and every added key comes out eventually."""
    rng = random.Random(7)
    for _round in range(200):
        q = WorkQueue()
        now = 0.0
        held: list[Batch] = []
        wanted: set[str] = set()
        for _step in range(60):
            now += rng.random()
            op = rng.random()
            if op < 0.45:
                key = f"k{rng.randrange(12)}"
                q.add(
                    key,
                    f"g{int(key[1:]) % 4}",
                    now=now,
                    delay=rng.choice([0.0, 0.5, 3.0]),
                    priority=rng.choice(list(Priority)),
                )
                wanted.add(key)
            elif op < 0.75:
                batch = q.pop(now)
                if batch is not None:
                    active = {b.group for b in held}
                    assert batch.group not in active
                    busy = {w.key for b in held for w in b.items}
                    assert not busy & {w.key for w in batch.items}
                    held.append(batch)
                    for work in batch.items:
                        wanted.discard(work.key)
                        if q.queued(work.key):
                            wanted.add(work.key)
            elif op < 0.95 and held:
                q.done(held.pop(rng.randrange(len(held))), now=now)
            elif wanted:
                key = rng.choice(sorted(wanted))
                if not any(w.key == key for b in held for w in b.items):
                    q.forget(key)
                    wanted.discard(key)
        for batch in held:
            q.done(batch, now=now)
        drained: set[str] = set()
        for _ in range(1000):
            wait = q.next_due(now)
            if wait is None:
                break
            now += wait
            batch = q.pop(now)
            if batch is not None:
                drained |= {w.key for w in batch.items}
                q.done(batch, now=now)
        assert wanted <= drained
        assert len(q) == 0
