"""What the sidecar serves: the last snapshot written to disk, and a way to wait for the next one.

The writer publishes a snapshot only after the files are on disk, so a client woken by a change
finds the files updated too. HTTP handlers read nothing else.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

from promptalias.sidecar.state import Entry


class Published:
    """The published entries (key -> Entry), their index ETag, readiness, and change waiters."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.index_etag = index_etag({})
        self.ready = False
        self.stopping = False
        self.waiting = 0  # requests in a long-poll
        self._changed = asyncio.Event()

    def publish(self, entries: dict[str, Entry]) -> None:
        self.entries = entries
        self.index_etag = index_etag(entries)
        self.wake_all()

    def wake_all(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    async def wait_changed(self, seconds: float) -> None:
        event = self._changed
        self.waiting += 1
        try:
            await asyncio.wait_for(event.wait(), timeout=seconds)
        except TimeoutError:
            pass
        finally:
            self.waiting -= 1

    def lookup(self, name: str, ref: str) -> Entry | None:
        """The entry for prompts:/<name>/<ref>: an alias, or a version some projection carries."""
        if ref.isascii() and ref.isdigit():
            version = int(ref)
            for key in sorted(self.entries):
                entry = self.entries[key]
                if entry.name == name and entry.carries_version(version):
                    return entry
            return None
        return self.entries.get(f"{name}.{ref}.json")


def index_etag(entries: dict[str, Entry]) -> str:
    # Content-based, so it survives a sidecar restart: a client never mistakes new content for old.
    listing = json.dumps(sorted((key, entry.etag) for key, entry in entries.items()))
    return '"i-' + hashlib.sha256(listing.encode()).hexdigest()[:32] + '"'


def etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    candidates = [part.strip().removeprefix("W/") for part in header.split(",")]
    return etag in candidates
