"""Human-readable progress for long testbed steps (cold builds take minutes)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


def say(message: str) -> None:
    """Print one progress line to stderr so it never mixes with `testbed env` output."""
    print(f"[testbed] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(message: str, *, heartbeat_s: float = 15.0) -> Iterator[None]:
    """Announce a step, print a heartbeat while it runs, and its duration when it ends."""
    say(f"{message} ...")
    started = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(heartbeat_s):
            say(f"  still {message.lower()} ({time.monotonic() - started:.0f}s)")

    ticker = threading.Thread(target=beat, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
    say(f"{message}: done in {time.monotonic() - started:.1f}s")
