"""The status of a PromptRegistry / ClusterPromptRegistry after a check of its MLflow (pure).

The registry daemon (handlers/registries.py) checks the server and the credentials, turns what
happened into a `Check`, and carries out the `RegistryStatusPlan`: it wakes the registry's
PromptAliases when it became Ready (instead of letting each sit out its own backoff), posts an
Event when Ready's status or reason changed, and writes the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from promptalias.api.conditions import Reason
from promptalias.api.registry import RegistrySpec
from promptalias.reconcile.tenancy import serves_no_namespace
from promptalias.reconcile.timestamps import format_timestamp


@dataclass(frozen=True)
class Check:
    """What a check of the registry found; `server_version` None keeps the one stored."""

    ready: bool
    reason: Reason
    message: str
    server_version: str | None = None


def connected(spec: RegistrySpec, version: str, *, authenticated: bool) -> Check:
    """MLflow answered: Ready, unless the registry serves no namespace at all."""
    if (nobody := serves_no_namespace(spec)) is not None:
        return Check(False, Reason.NO_NAMESPACES_ALLOWED, nobody, server_version=version)
    credentials = " with the configured credentials" if authenticated else ""
    message = f"MLflow {version} at {spec.tracking_uri} answered{credentials}"
    return Check(True, Reason.CONNECTED, message, server_version=version)


@dataclass(frozen=True)
class RegistryStatusPlan:
    status: dict[str, Any]  # the whole status to write
    ready_again: bool  # Ready now and not before: wake the registry's PromptAliases
    event: tuple[str, str, str] | None  # (type, reason, message) when Ready's status or reason changed


def ready_condition(check: Check, *, generation: int, previous: list[Any], now: datetime) -> dict[str, Any]:
    """The Ready condition; its lastTransitionTime moves only when its status flips."""
    old = _ready(previous)
    status = "True" if check.ready else "False"
    since = old.get("lastTransitionTime") if old.get("status") == status else format_timestamp(now)
    return {
        "type": "Ready",
        "status": status,
        "reason": str(check.reason),
        "message": check.message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def plan_registry_status(
    stored: Mapping[str, Any], check: Check, *, generation: int, now: datetime
) -> RegistryStatusPlan:
    """The status after `check`, given the `stored` status, and what to tell whom."""
    previous = list(stored.get("conditions") or [])
    ready = ready_condition(check, generation=generation, previous=previous, now=now)
    old = _ready(previous)
    server_version = check.server_version if check.server_version is not None else stored.get("serverVersion")
    changed = old.get("status") != ready["status"] or old.get("reason") != ready["reason"]
    return RegistryStatusPlan(
        status={
            "observedGeneration": generation,
            "conditions": [ready],
            "serverVersion": server_version,
            "lastCheckTime": format_timestamp(now),
        },
        ready_again=check.ready
        and not any(c.get("type") == "Ready" and c.get("status") == "True" for c in previous),
        event=("Normal" if check.ready else "Warning", ready["reason"], ready["message"])
        if changed
        else None,
    )


def _ready(conditions: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    return found


__all__ = ["Check", "RegistryStatusPlan", "connected", "plan_registry_status", "ready_condition"]
