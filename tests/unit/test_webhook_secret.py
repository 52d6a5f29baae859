"""Secret rotation for the webhook receiver: which values are accepted, when the Secret is re-read."""

from __future__ import annotations

from promptalias.reconcile.webhook_secret import (
    REREAD_AFTER_S,
    ROTATION_GRACE_S,
    TTL_S,
    SecretState,
    observe,
)


def test_first_read_accepts_only_that_value() -> None:
    state = observe(None, "a", 100.0)
    assert state.candidates(100.0) == ["a"]
    assert state.fresh(100.0 + TTL_S - 1)
    assert not state.fresh(100.0 + TTL_S)


def test_a_rotation_keeps_the_old_value_for_the_grace_period() -> None:
    rotated = observe(observe(None, "a", 0.0), "b", 10.0)
    assert rotated.candidates(10.0) == ["b", "a"]
    assert rotated.candidates(10.0 + ROTATION_GRACE_S - 1) == ["b", "a"]
    assert rotated.candidates(10.0 + ROTATION_GRACE_S) == ["b"]


def test_reading_the_same_value_again_keeps_the_grace_period_running() -> None:
    rotated = observe(observe(None, "a", 0.0), "b", 10.0)
    again = observe(rotated, "b", 50.0)
    assert (again.fetched, again.previous, again.previous_until) == (50.0, "a", 10.0 + ROTATION_GRACE_S)


def test_a_bad_signature_rereads_only_a_value_older_than_the_threshold() -> None:
    state = SecretState("a", 100.0)
    assert not state.may_reread(100.0 + REREAD_AFTER_S - 0.1)
    assert state.may_reread(100.0 + REREAD_AFTER_S)
