"""Run the sidecar as a real subprocess (tests, `make demo`, benchmarks). Stdlib only.

with SidecarProcess(["--namespace", ns, "--dir", str(d)], env={"KUBECONFIG": ...}, log=path) as sc:
    sc.wait_ready()
    status, headers, body = sc.get("/prompts/invoice-parser/production")
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SidecarProcess:
    """`python -m promptalias.sidecar.main ARGS --listen 127.0.0.1:<free port>`; stopped on exit."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        port: int | None = None,
        python: str = sys.executable,
    ) -> None:
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.log = log
        self.port = port or free_port()
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SidecarProcess:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 -- closed in stop()
        self._out = out
        self.proc = subprocess.Popen(
            [self.python, "-m", "promptalias.sidecar.main", *self.args, "--listen", f"127.0.0.1:{self.port}"],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.log and hasattr(self._out, "close"):
            self._out.close()
        self.proc = None
        return proc.returncode

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def get(
        self, path: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=dict(headers or {}))
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def status_of(self, path: str) -> int | None:
        try:
            return self.get(path, timeout=2.0)[0]
        except OSError:
            return None

    def wait_for(self, path: str, status: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited with {self.proc.returncode}:\n{self.logs()}")
            last = self.status_of(path)
            if last == status:
                return
            time.sleep(0.05)
        raise AssertionError(f"{path} answered {last}, not {status}, after {timeout} s:\n{self.logs()}")

    def wait_ready(self, timeout: float = 20.0) -> None:
        self.wait_for("/readyz", 200, timeout)
