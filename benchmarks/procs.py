"""Child processes of the benchmark: observer probes (benchmarks.probes) and the kubelet emulation.

Every child runs in its own session and is stopped (SIGTERM, then SIGKILL) by `stop()`; the
benchmark keeps them in an ExitStack so they stop on any exit path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child_env(extra: Mapping[str, str] | None = None, *, drop: Sequence[str] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Observations:
    """(monotonic ns, key, value) lines from a probe, with waiting for a value to appear."""

    def __init__(self) -> None:
        self._items: list[tuple[int, str, str]] = []
        self._cond = threading.Condition()
        self.ready = False
        self.cancelled = False

    def add(self, ns: int, key: str, value: str) -> None:
        with self._cond:
            self._items.append((ns, key, value))
            self._cond.notify_all()

    def mark_ready(self) -> None:
        with self._cond:
            self.ready = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """Wake every waiter; waits return None from now on."""
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()

    def latest(self, key: str) -> str | None:
        with self._cond:
            for _, k, value in reversed(self._items):
                if k == key:
                    return value
        return None

    def wait_ready(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.ready, timeout)

    def wait_for(self, key: str, value: str, after_ns: int, timeout: float) -> int | None:
        """The time of the first observation of `key` == `value` at or after `after_ns`."""

        def found() -> int | None:
            if self.cancelled:
                return -1
            for ns, k, v in self._items:
                if ns >= after_ns and k == key and v == value:
                    return ns
            return None

        with self._cond:
            result: int | None = self._cond.wait_for(found, timeout)
            return None if result == -1 else result


class Child:
    """A child process with its output going to a log file (and optionally parsed as observations)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        observe: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else child_env()
        self.observations = Observations() if observe else None
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Child:
        self._log = self.log_path.open("a", encoding="utf-8")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE if self.observations is not None else self._log,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        if self.observations is not None:
            self._reader = threading.Thread(target=self._read, name=f"read-{self.name}", daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        observations = self.observations
        assert observations is not None
        for line in self.proc.stdout:
            parts = line.split()
            if parts == ["ready"]:
                observations.mark_ready()
            elif len(parts) == 3 and parts[0].isdigit():
                observations.add(int(parts[0]), parts[1], parts[2])
            else:
                self._log.write(f"[stdout] {line}")
                self._log.flush()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.observations is not None
        deadline = time.monotonic() + timeout
        while not self.observations.wait_ready(0.5):
            if not self.running():
                raise RuntimeError(f"{self.name} exited before it was ready:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._log.close()
        self.proc = None


def probe(name: str, args: Sequence[str], log_dir: Path, env: Mapping[str, str] | None = None) -> Child:
    """`python -m benchmarks.probes ARGS` as an observing child."""
    return Child(
        name,
        [sys.executable, "-m", "benchmarks.probes", *args],
        log_dir / f"probe-{name}.log",
        env=env,
        observe=True,
    )
