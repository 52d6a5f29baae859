"""Atomic directory updates in kubelet's layout (pkg/volume/util/atomic_writer.go), stdlib only.

    DIR/..2025_01_02_03_04_05.123456789/<key>   the files of one version (a fresh directory each time)
    DIR/..data -> ..2025_01_02_03_04_05.123456789   swapped with rename(2): the atomic step
    DIR/<key>  -> ..data/<key>                  stable names for readers

A reader that opens DIR/<key> gets the whole old file or the whole new one, never a mix; a reader
that holds an open file keeps reading it after the swap. Apps and the client watch `..data` (or the
file's inode) to notice an update.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Mapping
from typing import Final

DATA_LINK: Final = "..data"
_TMP_DATA_LINK: Final = "..data_tmp"


class InvalidKeyError(ValueError):
    """A file name that cannot be written into the projection directory."""


def check_key(key: str) -> None:
    if not key or "/" in key or "\x00" in key or key.startswith("..") or key in (".", ".."):
        raise InvalidKeyError(f"{key!r} cannot be a file name in the projection directory")


def _timestamp_dir_name() -> str:
    now = time.time_ns()
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime(now // 1_000_000_000))
    return f"..{stamp}.{now % 1_000_000_000:09d}"


class AtomicDirWriter:
    """Writes a complete set of files into `directory`, replacing the previous set atomically."""

    def __init__(self, directory: str, *, file_mode: int = 0o644) -> None:
        self.directory = directory
        self.file_mode = file_mode

    def current_target(self) -> str | None:
        try:
            return os.readlink(os.path.join(self.directory, DATA_LINK))
        except OSError:
            return None

    def read_current(self) -> dict[str, bytes]:
        """The files of the version `..data` points at now (empty when there is none)."""
        target = self.current_target()
        if target is None:
            return {}
        base = os.path.join(self.directory, target)
        files: dict[str, bytes] = {}
        try:
            names = os.listdir(base)
        except OSError:
            return {}
        for name in names:
            with contextlib.suppress(OSError), open(os.path.join(base, name), "rb") as handle:
                files[name] = handle.read()
        return files

    def write(self, files: Mapping[str, bytes]) -> bool:
        """Publish exactly `files` (key → content). Returns False when nothing changed."""
        for key in files:
            check_key(key)
        os.makedirs(self.directory, exist_ok=True)
        if self.current_target() is not None and self.read_current() == dict(files):
            self._remove_stale_dirs(keep=self.current_target())
            return False

        new_name = _timestamp_dir_name()
        new_dir = os.path.join(self.directory, new_name)
        while os.path.exists(new_dir):  # two writes within one nanosecond tick of a coarse clock
            new_name += "_"
            new_dir = os.path.join(self.directory, new_name)
        os.mkdir(new_dir, 0o755)
        try:
            for key, content in files.items():
                path = os.path.join(new_dir, key)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(content)
                os.chmod(path, self.file_mode)  # umask must not narrow what readers in other users see
            # The swap: a new symlink under a temporary name, renamed over `..data`.
            tmp_link = os.path.join(self.directory, _TMP_DATA_LINK)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_link)
            os.symlink(new_name, tmp_link)
            os.rename(tmp_link, os.path.join(self.directory, DATA_LINK))
        except BaseException:
            shutil.rmtree(new_dir, ignore_errors=True)
            raise

        for key in files:
            self._ensure_user_link(key)
        self._remove_stale_links(set(files))
        self._remove_stale_dirs(keep=new_name)
        return True

    def _ensure_user_link(self, key: str) -> None:
        path = os.path.join(self.directory, key)
        wanted = os.path.join(DATA_LINK, key)
        try:
            if os.readlink(path) == wanted:
                return
        except OSError:
            pass
        tmp = os.path.join(self.directory, f"..{key}.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(wanted, tmp)
        os.replace(tmp, path)

    def _remove_stale_links(self, keep: set[str]) -> None:
        for name in os.listdir(self.directory):
            if name.startswith("..") or name in keep:
                continue
            path = os.path.join(self.directory, name)
            try:
                target = os.readlink(path)
            except OSError:
                continue  # not ours: leave other files alone
            if target.startswith(DATA_LINK + os.sep):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def _remove_stale_dirs(self, keep: str | None) -> None:
        for name in os.listdir(self.directory):
            if not name.startswith("..") or name in (DATA_LINK, _TMP_DATA_LINK, keep):
                continue
            path = os.path.join(self.directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif name.endswith(".tmp") and os.path.islink(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
