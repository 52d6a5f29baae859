"""Is a projection ConfigMap still what the operator wrote? (pure, stdlib)

The operator skips re-applying a projection whose content hash it applied before. That memory must
be dropped when someone deletes or edits the ConfigMap, or pods would go without their prompt until
the operator restarts: the ConfigMap watch asks `drift_reason` and, on an answer, makes the owner's
next pass apply the projection again (without trusting the hash annotation, which an edit may keep).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from promptalias.projection.render import KIND, content_hash
from promptalias.vocabulary import API_VERSION, CONTENT_HASH_ANNOTATION

STALE: Final = "stale"  # a projection hash that never matches: apply without reading first


def owner_uid(configmap: Mapping[str, Any]) -> str | None:
    """The uid of the PromptAlias that controls this ConfigMap, or None."""
    for ref in (configmap.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("apiVersion") == API_VERSION and ref.get("kind") == KIND and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def valid_hash(configmap: Mapping[str, Any]) -> str | None:
    """The content hash of the projection the ConfigMap holds, if it holds one intact (None: it
    was edited, or holds something else)."""
    annotated = ((configmap.get("metadata") or {}).get("annotations") or {}).get(CONTENT_HASH_ANNOTATION)
    if annotated is None or drift_reason(None, configmap, annotated) is not None:
        return None
    return str(annotated)


def drift_reason(event_type: str | None, configmap: Mapping[str, Any], expected: str) -> str | None:
    """Why the ConfigMap no longer holds the projection with content hash `expected` (None: it does)."""
    if event_type == "DELETED":
        return "deleted"
    meta = configmap.get("metadata") or {}
    annotated = (meta.get("annotations") or {}).get(CONTENT_HASH_ANNOTATION)
    data = configmap.get("data") or {}
    if len(data) != 1:
        return f"holds {len(data)} keys, not the one projection"
    try:
        (raw,) = data.values()
        document = json.loads(raw)
        actual = content_hash(document) if isinstance(document, dict) else None
    except (TypeError, ValueError):
        actual = None
    if actual is None:
        return "its projection is not a JSON document"
    if actual != annotated:
        return "its data was edited"
    if annotated != expected:
        return "it holds another projection"
    return None
