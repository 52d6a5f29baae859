"""Waiting for the operator: one poll loop for PromptAliases and PromptExperiments alike.

The CLI asks (a spec patch or a one-shot request annotation) and then reads the object until the
status shows the result. `poll` is the loop; `wait_until` is a wait with a goal, a refusal and a
timeout; `request` is the one-shot annotation protocol of a PromptAlias (rollback-to, takeover).
Every way a wait ends without success is a `CliError` with exit code 1 (EXIT_PENDING).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from promptalias.cli.cluster import Cluster
from promptalias.cli.errors import EXIT_PENDING, CliError
from promptalias.cli.formatting import dig, find_condition, ready_text

POLL_INTERVAL_S: Final = 0.2
CONSUMED_GRACE_S: Final = 5.0  # a consumed request's result shows in status moments later

Obj = Mapping[str, Any]
Judge = Callable[[Obj, bool], bool]
"""judge(obj, expired) -> True when the wait is over; raises CliError to end it in failure.
`expired` says that the timeout has passed: the judge decides what that means."""


def poll(
    read: Callable[[], Obj], judge: Judge, timeout_s: float, *, interval_s: float = POLL_INTERVAL_S
) -> Obj:
    """Read the object until `judge` accepts a reading, and return that reading."""
    deadline = time.monotonic() + timeout_s
    while True:
        obj = read()
        if judge(obj, time.monotonic() >= deadline):
            return obj
        time.sleep(interval_s)


def wait_until(
    read: Callable[[], Obj],
    done: Callable[[Obj], bool],
    timeout_s: float,
    *,
    refused: Callable[[Obj], str | None],
    waiting_on: Callable[[Obj], str],
    remedy: str,
) -> Obj:
    """Poll until `done`. `refused` returning a message ends the wait (the operator said no);
    at the timeout the error names what the object still shows (`waiting_on`) and `remedy`."""

    def judge(obj: Obj, expired: bool) -> bool:
        if done(obj):
            return True
        problem = refused(obj)
        if problem is not None:
            raise CliError(problem, "fix the cause and try again", code=EXIT_PENDING)
        if expired:
            raise CliError(
                f"the operator did not finish within {timeout_s:g}s ({waiting_on(obj)})",
                remedy,
                code=EXIT_PENDING,
            )
        return False

    return poll(read, judge, timeout_s)


def stalled(obj: Obj) -> tuple[str, str] | None:
    """(reason, message) of a Stalled=True condition, or None."""
    condition = find_condition(obj, "Stalled")
    if condition is None or condition.get("status") != "True":
        return None
    return str(condition.get("reason")), str(condition.get("message"))


def annotations_of(obj: Obj) -> Mapping[str, Any]:
    return dig(obj, "metadata", "annotations") or {}


def request(
    cluster: Cluster,
    obj: Obj,
    annotation: str,
    value: str,
    succeeded: Callable[[Obj], bool],
    timeout_s: float,
) -> Obj:
    """Ask the operator for a one-shot action on a PromptAlias (an annotation it performs and then
    removes) and wait until it is done. A Stalled condition that appears while the request is
    pending is a refusal: the request is withdrawn so that it cannot wedge the resource, and the
    reason is reported."""
    namespace = str(dig(obj, "metadata", "namespace"))
    name = str(dig(obj, "metadata", "name"))
    stalled_before = stalled(obj)
    asked = datetime.now(UTC)
    cluster.patch_alias(namespace, name, {"metadata": {"annotations": {annotation: value}}})
    consumed: float | None = None

    def judge(current: Obj, expired: bool) -> bool:
        nonlocal consumed
        pending = annotation in annotations_of(current)
        if not pending and succeeded(current):
            return True
        refusal = stalled(current)
        if pending and refusal is not None and refusal != stalled_before:
            cluster.patch_alias(namespace, name, {"metadata": {"annotations": {annotation: None}}})
            raise CliError(
                f"the operator refused the request ({refusal[0]}: {refusal[1]})",
                f"the request was withdrawn ({annotation} removed); fix the cause and try again",
                code=EXIT_PENDING,
            )
        if not pending:
            # Consumed; the status is written just after. Give it a moment, then say what happened.
            now = time.monotonic()
            consumed = consumed or now
            if now - consumed > CONSUMED_GRACE_S:
                warning = cluster.latest_warning(namespace, name, asked)
                raise CliError(
                    f"the operator took the request, but the result is not the one asked for "
                    f"({ready_text(current)})" + (f"; last warning: {warning}" if warning else ""),
                    f"see the Events: kubectl describe promptalias {name} -n {namespace}",
                    code=EXIT_PENDING,
                )
        elif expired:
            raise CliError(
                f"the operator did not act on the request within {timeout_s:g}s ({ready_text(current)})",
                f"check that the operator runs; the request stays in the annotation {annotation} "
                f"(cancel it: kubectl annotate promptalias {name} -n {namespace} {annotation}-)",
                code=EXIT_PENDING,
            )
        return False

    return poll(lambda: cluster.get_alias(namespace, name), judge, timeout_s)
