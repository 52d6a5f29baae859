"""Helpers shared by integration and e2e tests: waiting, applying YAML, the operator process."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from promptalias.testbed import Testbed
from promptalias.testbed.operator import OperatorProcess


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def apply_yaml(testbed: Testbed, text: str) -> None:
    testbed.kubectl("apply", "-f", "-", stdin=text)


def get_object(testbed: Testbed, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
    args = ["get", kind, name, "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    result: dict[str, Any] = json.loads(testbed.kubectl(*args).stdout)
    return result


def condition(testbed: Testbed, kind: str, namespace: str | None, name: str, type_: str) -> str | None:
    """The status ("True"/"False"/"Unknown") of a condition, or None when absent."""
    status = get_object(testbed, kind, namespace, name).get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return str(cond.get("status"))
    return None


__all__ = ["OperatorProcess", "apply_yaml", "condition", "get_object", "wait_for"]
