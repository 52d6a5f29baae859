"""`promptalias operator` as a child process (tests, `make demo`, benchmarks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from promptalias.testbed.bed import Testbed
from promptalias.testbed.errors import TestbedError
from promptalias.testbed.ports import free_port


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
        self.metrics_port = 0

    def start(self, timeout: float = 60) -> None:
        self.health_port = free_port()
        own_metrics = not any(arg.startswith("--metrics-listen") for arg in self.extra)
        self.metrics_port = free_port() if own_metrics else 0
        env = {**os.environ, **self.testbed.env(), **self.env, "PYTHONUNBUFFERED": "1"}
        argv = [
            sys.executable,
            "-m",
            "promptalias.cli.main",
            "operator",
            *(() if "--peering" in self.extra else ("--standalone",)),
            f"--health-listen=127.0.0.1:{self.health_port}",
            *((f"--metrics-listen=127.0.0.1:{self.metrics_port}",) if own_metrics else ()),
            *self.extra,
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise TestbedError(
                    "start operator", f"exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)

        deadline = time.monotonic() + timeout
        while True:
            try:
                if healthy():
                    return
            except TestbedError:
                raise
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TestbedError("start operator", f"no /healthz after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def metrics(self) -> str:
        """The operator's /metrics text (Prometheus exposition format)."""
        if not self.metrics_port:
            raise TestbedError(
                "read operator metrics", "this operator was started without its own metrics port"
            )
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

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
