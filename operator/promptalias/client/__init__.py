"""promptalias.client: load prompts by alias in microseconds, with changes pushed to the process.

    from promptalias.client import load_prompt

    prompt = load_prompt("prompts:/invoice-parser/production", key=user_id)
    messages = prompt.format(invoice=text)

Imports only the standard library (no mlflow, kopf, kubernetes, pydantic, aiohttp). Settings come
from the environment (see `PromptStore.from_env`):
- PROMPTALIAS_PROMPTS_DIR   projected `<prompt>.<alias>.json` files (default /var/run/promptalias/prompts)
- PROMPTALIAS_SIDECAR_URL   the sidecar, e.g. http://127.0.0.1:8718 (set by injection)
- MLFLOW_TRACKING_URI       MLflow REST fallback (plus MLFLOW_TRACKING_TOKEN / USERNAME / PASSWORD)
- PROMPTALIAS_CACHE_DIR     last-known-good copies (default ~/.cache/promptalias/prompts)
- PROMPTALIAS_POLL_INTERVAL file check period in seconds (0.02), PROMPTALIAS_REFRESH_INTERVAL MLflow
  refresh period (10), PROMPTALIAS_TIMEOUT network timeout (3), PROMPTALIAS_CLIENT_METRICS=0 turns
  the optional Prometheus counter off.
"""

from __future__ import annotations

import _thread

from promptalias.client._document import InvalidDocumentError, parse_document, validate_document
from promptalias.client._observe import current_prompt, log_filter_class, observe
from promptalias.client._prompt import BASELINE, CANDIDATE, Prompt, PromptFormatError, routing_bucket
from promptalias.client._store import DEFAULT_PROMPTS_DIR, PromptNotFoundError, PromptStore
from promptalias.client._uri import InvalidPromptURIError, PromptRef, parse_uri

__all__ = [
    "BASELINE",
    "CANDIDATE",
    "DEFAULT_PROMPTS_DIR",
    "InvalidDocumentError",
    "InvalidPromptURIError",
    "Prompt",
    "PromptFormatError",
    "PromptLogFilter",
    "PromptNotFoundError",
    "PromptRef",
    "PromptStore",
    "configure",
    "current_prompt",
    "get_store",
    "load_prompt",
    "observe",
    "parse_document",
    "parse_uri",
    "routing_bucket",
    "validate_document",
]

_default: PromptStore | None = None
_default_lock = _thread.allocate_lock()  # `threading` itself is imported only when a store starts

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    PromptLogFilter: type[logging.Filter]


def __getattr__(name: str) -> object:
    # PromptLogFilter subclasses logging.Filter; defining it on first use keeps `logging` out of import.
    if name == "PromptLogFilter":
        return log_filter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_store() -> PromptStore:
    """The process-wide store behind `load_prompt`, created from the environment on first use."""
    global _default  # noqa: PLW0603 -- one store per process, created lazily
    store = _default
    if store is None:
        with _default_lock:
            store = _default
            if store is None:
                store = _default = PromptStore.from_env()
    return store


def configure(store: PromptStore | None = None, /, **settings: object) -> PromptStore:
    """Replace the process-wide store: pass a PromptStore, or PromptStore keyword settings."""
    global _default
    new = store if store is not None else PromptStore(**settings)  # type: ignore[arg-type]
    with _default_lock:
        old, _default = _default, new
    if old is not None and old is not new:
        old.close()
    return new


if TYPE_CHECKING:
    from promptalias.client._store import LoadPrompt

    load_prompt: LoadPrompt


def load_prompt(  # type: ignore[no-redef]
    name_or_uri: str,
    version: str | int | None = None,
    *,
    key: object = None,
    allow_missing: bool = False,
) -> Prompt | None:
    """Load a prompt: `prompts:/name/alias`, `prompts:/name@alias` or `prompts:/name/3`.

    Also `load_prompt("name", version="production")` or `version=3`, like mlflow.genai.load_prompt.
    A cached read is a dict lookup (well under a microsecond); the first read of a URI resolves it
    from the projected files, the sidecar, MLflow, then the last-known-good copy, in that order.
    With an A/B experiment in the projection, `key` (user id, tenant, ...) picks the arm by a stable
    hash (`routing_bucket`); without a key the baseline is served. Raises PromptNotFoundError when no
    source knows the prompt (returns None instead when `allow_missing=True`).
    """
    store = _default or get_store()
    return store.load(name_or_uri, version, key=key, allow_missing=allow_missing)
