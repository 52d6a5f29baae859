"""What a user asks of a PromptAlias, read from its body (pure).

A user asks by changing the spec (a new generation) or by setting a one-shot request annotation
(`promptalias.io/rollback-to`, `promptalias.io/takeover`; names in `promptalias.vocabulary`), which
the pass removes once handled. The event handler queues a pass only when the request changed
(`request_of`), so the answers to our own writes do not queue passes for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptalias.vocabulary import ALIAS_REQUEST_ANNOTATIONS, ROLLBACK_ANNOTATION, TAKEOVER_ANNOTATION


def takeover_requested(meta: Mapping[str, Any]) -> bool:
    return (meta.get("annotations") or {}).get(TAKEOVER_ANNOTATION) == "true"


def rollback_request(meta: Mapping[str, Any]) -> int | None:
    """The version `promptalias.io/rollback-to` asks for ("3" or "3@<anything>"); None when absent or
    not a version (a value that is not one is ignored, not an error)."""
    value = (meta.get("annotations") or {}).get(ROLLBACK_ANNOTATION)
    if value is None:
        return None
    try:
        version = int(str(value).split("@", 1)[0])
    except ValueError:
        return None
    return version if version >= 1 else None


def request_of(body: Mapping[str, Any]) -> tuple[object, dict[str, str]]:
    """What a user asks of a PromptAlias: its generation and its request annotations."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return meta.get("generation"), {k: v for k, v in annotations.items() if k in ALIAS_REQUEST_ANNOTATIONS}


def wants_pass(body: Mapping[str, Any]) -> bool:
    """The user asked for something: spec not yet handled (status behind the generation), or a
    one-shot request annotation (rollback-to, takeover) waiting."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    if status.get("observedGeneration") != meta.get("generation"):
        return True
    return bool(set(ALIAS_REQUEST_ANNOTATIONS) & set(meta.get("annotations") or {}))


__all__ = ["request_of", "rollback_request", "takeover_requested", "wants_pass"]
