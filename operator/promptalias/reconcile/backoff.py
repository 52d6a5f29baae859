"""How long to wait after the n-th failure in a row: one rule for every retry loop of the operator.

The per-object workers (PromptAlias, PromptExperiment), both finalizers and the webhook
registration daemon retry with the same doubling; they differ only in the first delay (`base`) and
the ceiling (`cap`). Pure: the callers sleep.
"""

from __future__ import annotations

from typing import Final

MAX_BACKOFF_S: Final = 60.0
"""The workers' ceiling (a worker is also woken by every poke, so it never waits longer than this)."""
_MAX_DOUBLINGS: Final = 6


def backoff(failures: int, *, base: float = 1.0, cap: float = MAX_BACKOFF_S) -> float:
    """`base * 2**failures` seconds, at most `cap` (the doubling stops after six failures)."""
    return min(cap, base * 2.0 ** min(max(failures, 0), _MAX_DOUBLINGS))


__all__ = ["MAX_BACKOFF_S", "backoff"]
