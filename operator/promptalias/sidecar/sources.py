"""Where the sidecar's projections come from: API watches of ConfigMaps, or a mounted directory.

The watches are the sidecar's own light aiohttp code (sidecar/watch.py) on purpose: the sidecar
must start fast and stay small, so it does not use the kubernetes client the operator uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

import aiohttp

from promptalias.sidecar.atomic import DATA_LINK
from promptalias.sidecar.kubeconfig import KubeConnection
from promptalias.sidecar.state import is_projection_key
from promptalias.sidecar.watch import ConfigMapWatch, Handler, WatchStatus

logger = logging.getLogger("promptalias.sidecar")


def configmap_watches(
    session: aiohttp.ClientSession,
    connection: KubeConnection,
    namespace: str,
    handler: Handler,
    *,
    names: list[str],
    selector: str,
    timeout_seconds: int,
    read_grace: float,
) -> list[ConfigMapWatch]:
    """One watch per named ConfigMap (RBAC by resourceNames), else one label-selected watch."""
    # (field selector, label selector, the watch's name in logs and /healthz)
    scopes: list[tuple[str | None, str | None, str]] = (
        [(f"metadata.name={name}", None, f"configmap/{name}") for name in names]
        if names
        else [(None, selector or None, f"configmaps[{selector}]" if selector else "configmaps")]
    )
    return [
        ConfigMapWatch(
            session,
            connection,
            namespace,
            handler,
            field_selector=field_selector,
            label_selector=label_selector,
            name=watch_name,
            timeout_seconds=timeout_seconds,
            read_grace=read_grace,
        )
        for field_selector, label_selector, watch_name in scopes
    ]


class DirWatch:
    """File mode: follows a kubelet-mounted ConfigMap directory by polling its `..data` symlink."""

    def __init__(
        self, directory: str, poll_interval: float, apply: Callable[[dict[str, bytes]], None]
    ) -> None:
        self.directory = directory
        self.poll_interval = poll_interval
        self.apply = apply
        self.status = WatchStatus(name=f"dir {directory}")
        self._signature: object = None

    def _scan_signature(self) -> object:
        try:
            return ("link", os.readlink(os.path.join(self.directory, DATA_LINK)))
        except OSError:
            pass
        entries = []
        with os.scandir(self.directory) as it:  # raises when the directory is missing
            for entry in it:
                if is_projection_key(entry.name):
                    st = entry.stat()
                    entries.append((entry.name, st.st_ino, st.st_size, st.st_mtime_ns))
        return ("stat", tuple(sorted(entries)))

    def _read(self) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for name in sorted(os.listdir(self.directory)):
            if not is_projection_key(name):
                continue
            with contextlib.suppress(OSError), open(os.path.join(self.directory, name), "rb") as handle:
                files[name] = handle.read()
        return files

    async def run(self) -> None:
        while True:
            try:
                signature = self._scan_signature()
                self.status.contact()
                self.status.last_error = None
                if signature != self._signature or not self.status.synced:
                    self._signature = signature
                    self.apply(self._read())
                    self.status.events["SCAN"] = self.status.events.get("SCAN", 0) + 1
                    self.status.synced = True
            except OSError as exc:
                if self.status.last_error is None:
                    logger.warning("cannot read %s: %s", self.directory, exc)
                self.status.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(self.poll_interval)
