"""What the sidecar knows: the last good projection document of every key, per ConfigMap. Pure logic.

A key whose new content is invalid (not JSON, wrong schema, digest mismatch, or a document for a
different prompt/alias than its key says) keeps its previous good content: a corrupt write never
reaches the files or the HTTP answers. Two ConfigMaps with the same key: the one whose name sorts
first wins, deterministically, and the conflict is logged.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from promptalias.client._document import InvalidDocumentError, parse_document

logger = logging.getLogger("promptalias.sidecar")


@dataclass(frozen=True)
class Entry:
    """One projection file: its exact bytes, the parsed document, and an HTTP ETag of the bytes."""

    key: str
    raw: bytes
    doc: dict[str, Any]
    etag: str
    origin: str  # the ConfigMap (or mounted directory) it came from

    @property
    def name(self) -> str:
        return str(self.doc["name"])

    @property
    def alias(self) -> str:
        return str(self.doc["alias"])

    @property
    def version(self) -> int:
        return int(self.doc["version"])

    def carries_version(self, version: int) -> bool:
        if self.version == version:
            return True
        experiment = self.doc.get("experiment")
        return isinstance(experiment, dict) and experiment["candidate"].get("version") == version


def etag_of(raw: bytes) -> str:
    return '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'


def is_projection_key(key: str) -> bool:
    return key.endswith(".json") and not key.startswith(".") and "/" not in key


def parse_entry(key: str, raw: bytes, origin: str) -> Entry:
    """Validate one key of a ConfigMap; raises InvalidDocumentError."""
    doc = parse_document(raw)
    expected = f"{doc['name']}.{doc['alias']}.json"
    if key != expected:
        raise InvalidDocumentError(
            f"key {key!r} holds {doc['name']}@{doc['alias']} (expected key {expected!r})"
        )
    return Entry(key=key, raw=raw, doc=doc, etag=etag_of(raw), origin=origin)


class ProjectionState:
    """ConfigMap name → key → last good Entry, and the merged key → Entry view derived from it."""

    def __init__(self) -> None:
        self._origins: dict[str, dict[str, Entry]] = {}
        self._versions: dict[str, str] = {}  # origin → resourceVersion last applied
        self._merged: dict[str, Entry] = {}
        self._reported: set[tuple[str, str, str]] = set()
        self.invalid_total = 0

    @property
    def merged(self) -> dict[str, Entry]:
        return self._merged

    def origins(self) -> list[str]:
        return sorted(self._origins)

    def apply(self, origin: str, data: Mapping[str, str | bytes] | None, resource_version: str = "") -> bool:
        """Set the keys of one ConfigMap (or directory). Returns True when the merged view changed."""
        previous = self._origins.get(origin, {})
        entries: dict[str, Entry] = {}
        for key, value in sorted((data or {}).items()):
            if not is_projection_key(key):
                self._report(origin, key, resource_version, "not a <prompt>.<alias>.json key; ignored")
                continue
            raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            old = previous.get(key)
            if old is not None and old.raw == raw:
                entries[key] = old
                continue
            try:
                entries[key] = parse_entry(key, raw, origin)
            except InvalidDocumentError as exc:
                self.invalid_total += 1
                if old is not None:
                    entries[key] = old
                    what = f"keeping version {old.version}"
                else:
                    what = "not serving it"
                self._report(origin, key, resource_version, f"invalid ({exc}); {what}")
        self._origins[origin] = entries
        self._versions[origin] = resource_version
        return self._remerge()

    def remove(self, origin: str) -> bool:
        if self._origins.pop(origin, None) is None:
            return False
        self._versions.pop(origin, None)
        return self._remerge()

    def replace(
        self, origins: Iterable[str], objects: Mapping[str, tuple[Mapping[str, str] | None, str]]
    ) -> bool:
        """A full listing of some scope: `objects` (origin → (data, resourceVersion)) is everything that
        exists among `origins` (names in scope that we know of); the rest of that scope is gone."""
        changed = False
        for origin in list(origins):
            if origin not in objects:
                changed = self.remove(origin) or changed
        for origin, (data, version) in objects.items():
            if self._versions.get(origin) == version and version:
                continue
            changed = self.apply(origin, data, version) or changed
        return changed

    def _remerge(self) -> bool:
        merged: dict[str, Entry] = {}
        for origin in sorted(self._origins):
            for key, entry in self._origins[origin].items():
                winner = merged.get(key)
                if winner is None:
                    merged[key] = entry
                elif winner.origin != origin:
                    self._report(origin, key, "conflict", f"also provided by {winner.origin}, which wins")
        changed = {k: e.etag for k, e in merged.items()} != {k: e.etag for k, e in self._merged.items()}
        self._merged = merged
        return changed

    def _report(self, origin: str, key: str, version: str, message: str) -> None:
        token = (origin, key, version)
        if token in self._reported:
            return
        self._reported.add(token)
        if len(self._reported) > 10_000:
            self._reported.clear()
        logger.warning("%s key %s: %s", origin, key, message)
