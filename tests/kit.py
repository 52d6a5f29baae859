"""Helpers shared by integration and e2e tests: waiting, applying YAML, the operator process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptalias.testbed import Testbed
from promptalias.testbed.ports import free_port


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


class OperatorProcess:
    """`promptalias operator --standalone` as a child process, with its log and liveness probe."""

    def __init__(
        self, testbed: Testbed, log_path: Path, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.testbed = testbed
        self.log_path = log_path
        self.extra = extra
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port = 0

    def start(self, timeout: float = 60) -> None:
        self.health_port = free_port()
        env = {**os.environ, **self.testbed.env(), **self.env, "PYTHONUNBUFFERED": "1"}
        argv = [
            sys.executable,
            "-m",
            "promptalias.cli.main",
            "operator",
            "--standalone",
            f"--health-listen=127.0.0.1:{self.health_port}",
            *self.extra,
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log_tail()}")
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)

        wait_for(healthy, timeout, "the operator's /healthz")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the operator dies mid-way, as in a node failure."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None
