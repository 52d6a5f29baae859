"""Which webhook secrets the receiver accepts, and when it may read the Secret again (pure).

MLflow signs deliveries with the secret it was last given. When a user rotates the Kubernetes
Secret, MLflow keeps signing with the old value until the registration catches up (up to a minute)
and its webhook cache expires: the old value stays acceptable for `ROTATION_GRACE_S`. A delivery
whose signature matches neither value may mean the Secret was rotated moments ago, so the
receiver reads it once more before refusing, but at most once per `REREAD_AFTER_S`, however many
bad signatures arrive: a burst of forged deliveries costs one Secret read, not one per request.
All times are monotonic seconds passed in by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

TTL_S: Final = 30.0  # a cached value is used without reading the Secret for this long
REREAD_AFTER_S: Final = 2.0  # a bad signature re-reads the Secret only if the value is older
ROTATION_GRACE_S: Final = 300.0


@dataclass(frozen=True)
class SecretState:
    """The current value (read at `fetched`) and the one before a rotation, while still accepted."""

    value: str
    fetched: float
    previous: str | None = None
    previous_until: float = 0.0

    def candidates(self, now: float) -> list[str]:
        """The values a signature may be made with, the current one first."""
        old = [self.previous] if self.previous and now < self.previous_until else []
        return [self.value, *old]

    def fresh(self, now: float) -> bool:
        return now - self.fetched < TTL_S

    def may_reread(self, now: float) -> bool:
        """After a bad signature: is the value old enough to be worth reading the Secret again?"""
        return now - self.fetched >= REREAD_AFTER_S


def observe(state: SecretState | None, value: str, now: float) -> SecretState:
    """The state after reading `value` from the Secret at `now` (a changed value is a rotation)."""
    if state is None:
        return SecretState(value, now)
    if state.value != value:
        return SecretState(value, now, previous=state.value, previous_until=now + ROTATION_GRACE_S)
    return replace(state, fetched=now)
