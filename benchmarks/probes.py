"""Observer processes: each one watches a version and prints a line whenever it changes.

    python -m benchmarks.probes commit  DB_FILE                    # MLflow's sqlite store, on commit
    python -m benchmarks.probes client  INTERVAL_S URI [URI ...]   # promptalias.client.load_prompt
    python -m benchmarks.probes mlflow  INTERVAL_S URI [URI ...]   # mlflow.genai.load_prompt
    python -m benchmarks.probes file    INTERVAL_S PATH [PATH ...] # re-read a mounted JSON file

Protocol on stdout, one line per observation: `<time.monotonic_ns()> <key> <version>`, first for
the initial value of every key and then for each change; `ready` once all keys have a value.
CLOCK_MONOTONIC is one clock for the whole machine, so the parent compares these timestamps with
its own. Each probe imports only what its kind needs: the client probe never imports mlflow.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sqlite3
import struct
import sys
import time
from collections.abc import Callable

IN_MODIFY = 0x00000002
IN_DELETE = 0x00000200
_EVENT_HEADER = struct.Struct("iIII")


def emit(key: str, version: object) -> None:
    sys.stdout.write(f"{time.monotonic_ns()} {key} {version}\n")
    sys.stdout.flush()


def emit_at(ns: int, key: str, version: object) -> None:
    sys.stdout.write(f"{ns} {key} {version}\n")
    sys.stdout.flush()


def ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


# ---- commit: the moment MLflow's backend store commits an alias change ----------------------------


def _aliases(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT name, alias, version FROM registered_model_aliases").fetchall()
    return {f"{name}@{alias}": int(version) for name, alias, version in rows}


def commit_probe(db_file: str) -> None:
    """Report alias rows of MLflow's sqlite database the moment a write transaction commits.

    No polling: inotify reports the deletion of `<db>-journal`, which is how sqlite (rollback journal
    mode, MLflow's default) ends every write transaction, or a write to `<db>-wal` in WAL mode. Only
    then is the alias table read (one short read per commit), so the probe never competes with the
    server for the database lock while it writes. The timestamp is the moment the event arrived.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = libc.inotify_init1(0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    directory, base = os.path.split(os.path.abspath(db_file))
    if libc.inotify_add_watch(fd, directory.encode(), IN_DELETE | IN_MODIFY) < 0:
        raise OSError(ctypes.get_errno(), f"inotify_add_watch({directory}) failed")
    journal, wal = (base + "-journal").encode(), (base + "-wal").encode()
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=10, isolation_level=None)
    last = _aliases(conn)
    for key, version in sorted(last.items()):
        emit(key, version)
    ready()
    while True:
        data = os.read(fd, 65536)
        now = time.monotonic_ns()
        committed = False
        offset = 0
        while offset < len(data):
            _wd, mask, _cookie, length = _EVENT_HEADER.unpack_from(data, offset)
            name = data[offset + _EVENT_HEADER.size : offset + _EVENT_HEADER.size + length].rstrip(b"\0")
            offset += _EVENT_HEADER.size + length
            if (name == journal and mask & IN_DELETE) or (name == wal and mask & IN_MODIFY):
                committed = True
        if not committed:
            continue
        current = _aliases(conn)
        for key, version in sorted(current.items()):
            if last.get(key) != version:
                emit_at(now, key, version)
        for key in last.keys() - current.keys():
            emit_at(now, key, "none")
        last = current


# ---- readers: an app's next read ------------------------------------------------------------------


def _spin(interval_s: float, keys: list[str], read: Callable[[str], object]) -> None:
    """Read every key, print changes, sleep `interval_s`, forever (until killed)."""
    last: dict[str, object] = {}
    announced = False
    while True:
        for key in keys:
            try:
                version = read(key)
            except Exception as exc:  # noqa: BLE001 -- a failed read is reported, the loop goes on
                print(f"read {key} failed: {exc!r}", file=sys.stderr, flush=True)
                continue
            if last.get(key) != version:
                last[key] = version
                emit(key, version)
        if not announced and len(last) == len(keys):
            announced = True
            ready()
        time.sleep(interval_s)


def client_probe(interval_s: float, uris: list[str]) -> None:
    """promptalias.client as an app uses it: process-wide store configured from the environment."""
    from promptalias.client import load_prompt

    _spin(interval_s, uris, lambda uri: load_prompt(uri).version)


def mlflow_probe(interval_s: float, uris: list[str]) -> None:
    """Stock MLflow: mlflow.genai.load_prompt with its default in-process alias cache."""
    import mlflow.genai

    _spin(interval_s, uris, lambda uri: mlflow.genai.load_prompt(uri).version)


def file_probe(interval_s: float, paths: list[str]) -> None:
    """An app that re-reads a kubelet-mounted file (DIR/<key> -> ..data/<key>) on every request."""
    import json

    def read(path: str) -> object:
        with open(path, "rb") as handle:
            return json.loads(handle.read())["version"]

    _spin(interval_s, paths, read)


def main(argv: list[str]) -> int:
    kind, *args = argv
    if kind == "commit":
        commit_probe(args[0])
    elif kind == "client":
        client_probe(float(args[0]), args[1:])
    elif kind == "mlflow":
        mlflow_probe(float(args[0]), args[1:])
    elif kind == "file":
        file_probe(float(args[0]), args[1:])
    else:
        print(f"unknown probe {kind!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(0)
