"""Pure rendering of the projection ConfigMap (format: docs/contracts.md, "Projection file").

Nothing here does I/O: the operator applies what `build_configmap` returns with server-side apply,
the sidecar and the client read what `render_projection` produced. Stdlib only, so any process can
import it cheaply.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from promptalias.reconcile.timestamps import format_timestamp
from promptalias.vocabulary import API_VERSION, CONTENT_HASH_ANNOTATION

SCHEMA_VERSION: Final = 1
KIND: Final = "PromptAlias"

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "promptalias"
PROJECTION_SELECTOR: Final = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"  # every projection ConfigMap
PROMPT_LABEL: Final = "promptalias.io/prompt"
ALIAS_LABEL: Final = "promptalias.io/alias"
# Labels may be hashed (see `label_value`); these annotations always carry the exact names.
PROMPT_ANNOTATION: Final = "promptalias.io/prompt"
ALIAS_ANNOTATION: Final = "promptalias.io/alias"
VERSION_ANNOTATION: Final = "promptalias.io/version"

# The apiserver refuses a ConfigMap whose data exceeds 1 MiB (MaxSecretSize); we measure the whole
# serialized object, which is stricter by a few hundred bytes, so a render that passes here never
# fails on apply for size.
MAX_CONFIGMAP_BYTES: Final = 1024 * 1024
CONFIGMAP_NAME_PREFIX: Final = "promptalias-"
MAX_CONFIGMAP_NAME: Final = 253
MAX_KEY_LENGTH: Final = 253

_LABEL_VALUE_RE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIGMAP_KEY_RE: Final = re.compile(r"^[-._a-zA-Z0-9]+$")
_DNS1123_INVALID_RE: Final = re.compile(r"[^a-z0-9.-]+")
_LABEL_INVALID_RE: Final = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_LABEL_VALUE: Final = 63
_HASH_CHARS: Final = 16
_HASHED_NAME_RE: Final = re.compile(rf"-[0-9a-f]{{{_HASH_CHARS}}}$")


class ProjectionError(ValueError):
    """A projection that cannot be rendered; the operator reports it as Stalled (permanent)."""


class ProjectionTooLarge(ProjectionError):  # noqa: N818 -- name fixed by the operator contract
    """The ConfigMap would exceed the 1 MiB Kubernetes limit. Prompts are never truncated."""

    def __init__(self, *, name: str, size: int, limit: int = MAX_CONFIGMAP_BYTES) -> None:
        self.name = name
        self.size = size
        self.limit = limit
        super().__init__(
            f"projection ConfigMap {name!r} would be {size} bytes, over the Kubernetes limit of {limit} "
            "bytes; shorten the prompt template (or disable the projection with spec.projection.enabled: "
            "false and let apps read MLflow directly)"
        )


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept as is (sizes are counted in bytes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def template_digest(template: str | Sequence[Mapping[str, Any]]) -> str:
    """`sha256:<hex>` of the canonical JSON of the template (a string or a list of chat messages).

    The same template gives the same digest in every process and Python version, so it can be compared
    with `status.templateDigest` and across clusters.
    """
    return "sha256:" + _sha256(canonical_json(_template_value(template)))


def projection_key(name: str, alias: str) -> str:
    """The ConfigMap key and file name of one prompt alias: `<prompt>.<alias>.json`.

    MLflow aliases never contain a dot, so the key splits back unambiguously at its last two dots.
    """
    if not name or not alias:
        raise ProjectionError("prompt name and alias must not be empty")
    if "." in alias or "/" in alias:
        raise ProjectionError(f"alias {alias!r} must not contain '.' or '/'")
    key = f"{name}.{alias}.json"
    if len(key) > MAX_KEY_LENGTH or not _CONFIGMAP_KEY_RE.match(key):
        raise ProjectionError(
            f"{key!r} is not a valid ConfigMap key (at most {MAX_KEY_LENGTH} characters of [-._a-zA-Z0-9]); "
            "rename the prompt or alias"
        )
    return key


def uri_for(name: str, alias: str) -> str:
    return f"prompts:/{name}@{alias}"


def _short_hash(text: str) -> str:
    return _sha256(text)[:_HASH_CHARS]


def configmap_name(pa_name: str) -> str:
    """`promptalias-<pa_name>`: a valid DNS-1123 subdomain of at most 253 characters.

    Longer (or unusual) names keep a readable prefix and end in `-<16 hex digits>`, a hash of the full
    name, so the name is the same on every render. Plain names never take that shape (a name that
    happens to end in `-<16 hex digits>` is hashed too), so a plain name can never equal another
    PromptAlias's hashed one: two PromptAliases never share a ConfigMap.
    """
    if not pa_name:
        raise ProjectionError("PromptAlias name must not be empty")
    candidate = CONFIGMAP_NAME_PREFIX + pa_name
    if (
        len(candidate) <= MAX_CONFIGMAP_NAME
        and _is_dns1123_subdomain(candidate)
        and not _HASHED_NAME_RE.search(candidate)
    ):
        return candidate
    suffix = "-" + _short_hash(pa_name)
    body = _DNS1123_INVALID_RE.sub("-", candidate.lower())[: MAX_CONFIGMAP_NAME - len(suffix)]
    body = body.rstrip("-.")
    return body + suffix


def _is_dns1123_subdomain(name: str) -> bool:
    return all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", part) is not None for part in name.split("."))


def label_value(value: str) -> str:
    """`value` when it is a valid label value, else a readable prefix plus a hash of the full value.

    Select by label with the same function: `promptalias.io/prompt=label_value(name)`.
    """
    if len(value) <= _MAX_LABEL_VALUE and _LABEL_VALUE_RE.match(value):
        return value
    suffix = _short_hash(value)
    prefix = _LABEL_INVALID_RE.sub("-", value)[: _MAX_LABEL_VALUE - _HASH_CHARS - 1]
    prefix = prefix.strip("-_.")
    return f"{prefix}-{suffix}" if prefix else suffix


def _check_template(template: Any) -> None:
    if isinstance(template, str):
        return
    if isinstance(template, Sequence) and not isinstance(template, bytes | bytearray):
        for message in template:
            if not (isinstance(message, Mapping) and "role" in message and "content" in message):
                raise ProjectionError(
                    "a chat template must be a list of messages with 'role' and 'content' keys"
                )
        return
    raise ProjectionError(f"a template must be a string or a list of chat messages, not {type(template)}")


def _template_value(template: Any) -> str | list[dict[str, Any]]:
    _check_template(template)
    if isinstance(template, str):
        return template
    return [dict(message) for message in template]


def _format_time(updated: datetime | str) -> str:
    if isinstance(updated, str):
        return updated
    if updated.tzinfo is None:
        raise ProjectionError("'updated' must be timezone-aware")
    return format_timestamp(updated)


def _check_version(version: Any, what: str) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ProjectionError(f"{what} must be a positive integer, not {version!r}")
    return version


def _json_object(value: Any, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ProjectionError(f"{what} must be a JSON object or null")
    return dict(value)


def _render_experiment(name: str, experiment: Mapping[str, Any]) -> dict[str, Any]:
    candidate = experiment.get("candidate")
    if not isinstance(candidate, Mapping):
        raise ProjectionError("experiment.candidate must be an object with alias, version and template")
    alias = candidate.get("alias")
    if not isinstance(alias, str) or not alias:
        raise ProjectionError("experiment.candidate.alias must be a non-empty string")
    template = candidate.get("template")
    weight = experiment.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 100:
        raise ProjectionError(f"experiment.weight must be a number from 0 to 100, not {weight!r}")
    key = experiment.get("key")
    if key is not None and not isinstance(key, str):
        raise ProjectionError("experiment.key must be a string or null")
    return {
        "candidate": {
            "alias": alias,
            "version": _check_version(candidate.get("version"), "experiment.candidate.version"),
            "uri": uri_for(name, alias),
            "template": _template_value(template),
            "digest": template_digest(_template_value(template)),
            "response_format": _json_object(
                candidate.get("response_format"), "experiment.candidate.response_format"
            ),
            "model_config": _json_object(candidate.get("model_config"), "experiment.candidate.model_config"),
        },
        "weight": weight,
        "key": key,
    }


def render_projection(
    *,
    name: str,
    alias: str,
    version: int,
    template: str | Sequence[Mapping[str, Any]],
    response_format: Mapping[str, Any] | None,
    model_config: Mapping[str, Any] | None,
    tags: Mapping[str, str],
    updated: datetime | str,
    experiment: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The projection document of one prompt alias (schema 1, docs/contracts.md).

    `updated` is when this alias last moved (or the version was created), not the render time: the
    ConfigMap's content hash leaves it out, so a re-render with a new time is still a no-op write.
    `experiment` is `{"candidate": {"alias", "version", "template", "response_format"?, "model_config"?},
    "weight": 0-100, "key": str | None}`; the candidate's uri and digest are filled in here.
    """
    projection_key(name, alias)  # validates name and alias early, with the same message as the key
    _check_template(template)
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise ProjectionError("tags must map strings to strings")
    document: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "name": name,
        "alias": alias,
        "version": _check_version(version, "version"),
        "uri": uri_for(name, alias),
        "digest": template_digest(template),
        "template": _template_value(template),
        "response_format": _json_object(response_format, "response_format"),
        "model_config": _json_object(model_config, "model_config"),
        "tags": dict(sorted(tags.items())),
        "updated": _format_time(updated),
        "experiment": None if experiment is None else _render_experiment(name, experiment),
    }
    # Fail here rather than on apply: a document must survive a JSON round trip unchanged.
    try:
        canonical_json(document)
    except (TypeError, ValueError) as exc:
        raise ProjectionError(f"projection of {name}@{alias} is not valid JSON: {exc}") from exc
    return document


def serialize_document(document: Mapping[str, Any]) -> str:
    """The exact text stored in the ConfigMap (and so in the projected file)."""
    return canonical_json(document)


def content_hash(document: Mapping[str, Any]) -> str:
    """`sha256:<hex>` over the document without `updated`: equal hashes mean the write can be skipped."""
    stable = {k: v for k, v in document.items() if k != "updated"}
    return "sha256:" + _sha256(canonical_json(stable))


def build_configmap(
    namespace: str, pa_name: str, owner_uid: str, document: Mapping[str, Any]
) -> dict[str, Any]:
    """The projection ConfigMap for server-side apply, owned by (and garbage-collected with) the CR.

    Raises `ProjectionTooLarge` when the object would exceed 1 MiB; nothing is ever truncated.
    """
    name = document["name"]
    alias = document["alias"]
    cm_name = configmap_name(pa_name)
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": cm_name,
            "namespace": namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                PROMPT_LABEL: label_value(name),
                ALIAS_LABEL: label_value(alias),
            },
            "annotations": {
                PROMPT_ANNOTATION: name,
                ALIAS_ANNOTATION: alias,
                VERSION_ANNOTATION: str(document["version"]),
                CONTENT_HASH_ANNOTATION: content_hash(document),
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": pa_name,
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {projection_key(name, alias): serialize_document(document)},
    }
    size = len(canonical_json(body).encode("utf-8"))
    if size > MAX_CONFIGMAP_BYTES:
        raise ProjectionTooLarge(name=cm_name, size=size)
    return body
