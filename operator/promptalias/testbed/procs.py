"""Child processes of the testbed: started on loopback, tied to their owner, always stopped.

Every server runs in its own process group so a stop reaches its workers too. Processes started
for a test session also get PR_SET_PDEATHSIG, so a crashed or killed pytest takes them down with
it; `reap_orphans` cleans up anything left by an owner that died some other way.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from promptalias.testbed.errors import TestbedError
from promptalias.testbed.ports import LOOPBACK, free_port, port_is_open

_PR_SET_PDEATHSIG = 1
RUN_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")  # noqa: S108 - tmpfs on purpose
RUN_PREFIX = "promptalias-"
OWNER_FILE = "owner.json"
DETACHED = 0  # owner of a testbed started by `promptalias testbed up`: only `down` stops it


def _tie_to_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Server:
    """One long-running child process with its log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    tied: bool = True
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits, not the process: tie the child
        # only when started from the main thread (reap_orphans covers the other case).
        tie = self.tied and threading.current_thread() is threading.main_thread()
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                start_new_session=True,
                preexec_fn=_tie_to_parent if tie else None,  # noqa: PLW1509 - only calls prctl
            )
        except OSError as exc:
            raise TestbedError(
                f"start {self.name}", f"could not execute {self.argv[0]}: {exc}", "check the binary exists"
            ) from exc
        finally:
            log.close()

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen else 0

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float, remedy: str) -> None:
        """Poll `probe` until it is true; fail fast with the log tail if the process dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise TestbedError(
                    f"start {self.name}",
                    f"{self.name} exited with code {self.popen.returncode if self.popen else '?'}; "
                    f"last log lines ({self.log_path}):\n{self.log_tail()}",
                    remedy,
                )
            with contextlib.suppress(Exception):
                if probe():
                    return
            time.sleep(0.1)
        raise TestbedError(
            f"start {self.name}",
            f"not ready after {timeout_s:.0f}s; last log lines ({self.log_path}):\n{self.log_tail()}",
            remedy,
        )

    def run(self, probe: Callable[[], bool], timeout_s: float, remedy: str) -> None:
        """`start`, then `wait_ready`."""
        self.start()
        self.wait_ready(probe, timeout_s, remedy)

    def stop(self, grace_s: float = 10.0) -> None:
        if self.popen is None:
            return
        kill_group(self.popen.pid, grace_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1)
        self.popen = None


def http_ok(url: str, context: ssl.SSLContext | None = None) -> Callable[[], bool]:
    """A readiness probe: GET `url` answers 200 within a second."""

    def probe() -> bool:
        with urllib.request.urlopen(url, context=context, timeout=1) as response:  # noqa: S310 - testbed URLs
            return bool(response.status == 200)

    return probe


class RestartableServer:
    """A testbed service run as one `Server` that tests stop and start again on the same port and data
    (MLflow, Prometheus); the dataclass that extends it declares `port` and `server`."""

    port: int
    server: Server | None

    def _claim_port(self, what: str, host: str = LOOPBACK) -> None:
        """A free port the first time; on a restart the same port, which must be free again."""
        if not self.port:
            self.port = free_port()
        elif port_is_open(self.port, host):
            raise TestbedError(
                f"start {what}", f"port {self.port} is already in use", "stop whatever listens there first"
            )

    def _run(self, server: Server, ready_url: str, timeout_s: float, remedy: str) -> None:
        """Start `server` and wait until `ready_url` answers 200."""
        self.server = server
        server.run(http_ok(ready_url), timeout_s, remedy)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def running(self) -> bool:
        return self.server is not None and self.server.running()


def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process is in the group (zombies may never be reaped here)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)  # reap the leader if it is our own child
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        # fields: state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def kill_group(pgid: int, grace_s: float = 10.0) -> None:
    """SIGTERM a process group, then SIGKILL whatever is left after `grace_s`."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.05)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as gone."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def write_owner(run_dir: Path, owner_pid: int, groups: Sequence[int]) -> None:
    """Record who owns a run directory and which process groups it started."""
    (run_dir / OWNER_FILE).write_text(json.dumps({"owner": owner_pid, "groups": list(groups)}))


def reap_orphans(keep: Path | None = None) -> list[Path]:
    """Stop servers and remove run dirs whose owning process is gone (a crashed earlier run)."""
    reaped: list[Path] = []
    for run_dir in RUN_ROOT.glob(f"{RUN_PREFIX}*"):
        if keep is not None and run_dir == keep:
            continue
        try:
            owner = json.loads((run_dir / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        owner_pid = int(owner.get("owner", 0))
        if owner_pid == DETACHED or pid_alive(owner_pid):
            continue
        for pgid in owner.get("groups", []):
            kill_group(int(pgid), grace_s=5)
        if (run_dir / "node").exists():
            from promptalias.testbed.node import cleanup_node

            cleanup_node(run_dir / "node")
        shutil.rmtree(run_dir, ignore_errors=True)
        reaped.append(run_dir)
    return reaped
