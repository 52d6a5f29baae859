"""Validation of projection documents (docs/contracts.md), shared by the client and the sidecar.

Stdlib only. A document that fails here is never served: readers keep the last good one.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing is not imported at run time: the client must import fast
if TYPE_CHECKING:
    from typing import Any, Final

SCHEMA: Final = 1
# MLflow keeps the template and its settings in version tags; these are not user tags.
MLFLOW_TEXT_TAG: Final = "mlflow.prompt.text"
MLFLOW_TYPE_TAG: Final = "_mlflow_prompt_type"
MLFLOW_RESPONSE_FORMAT_TAG: Final = "_mlflow_prompt_response_format"
MLFLOW_MODEL_CONFIG_TAG: Final = "_mlflow_prompt_model_config"


class InvalidDocumentError(ValueError):
    """A projection document that is not valid JSON or does not follow the schema."""


def canonical_json(value: Any) -> str:
    # Must stay identical to promptalias.projection.render.canonical_json (pinned by a unit test).
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def template_digest(template: Any) -> str:
    import hashlib  # OpenSSL's loader costs milliseconds; pay it on the first document, not at import

    return "sha256:" + hashlib.sha256(canonical_json(template).encode("utf-8")).hexdigest()


def _check_template(template: Any, where: str) -> None:
    if isinstance(template, str):
        return
    if isinstance(template, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in template
    ):
        return
    raise InvalidDocumentError(f"{where}: template must be a string or a list of {{role, content}} messages")


def _check_version(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidDocumentError(f"{where}: version must be a positive integer")


def _check_object(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, dict):
        raise InvalidDocumentError(f"{where} must be an object or null")


def validate_document(doc: Any, *, verify_digest: bool = True, pinned: bool = False) -> dict[str, Any]:
    """Return `doc` when it is a schema-1 projection document, else raise InvalidDocumentError.

    `pinned`: a document of a pinned version (from MLflow or the cache) has an empty alias.
    """
    if not isinstance(doc, dict):
        raise InvalidDocumentError("a projection document must be a JSON object")
    schema = doc.get("schema")
    if schema != SCHEMA:
        raise InvalidDocumentError(
            f"unsupported projection schema {schema!r} (this client reads schema {SCHEMA}); "
            "upgrade promptalias on the app side"
        )
    if not isinstance(doc.get("name"), str) or not doc["name"]:
        raise InvalidDocumentError("name must be a non-empty string")
    if not isinstance(doc.get("alias"), str) or not (doc["alias"] or pinned):
        raise InvalidDocumentError("alias must be a non-empty string")
    _check_version(doc.get("version"), "document")
    template = doc.get("template")
    _check_template(template, "document")
    digest = doc.get("digest")
    if not isinstance(digest, str):
        raise InvalidDocumentError("digest must be a string")
    if verify_digest and digest != template_digest(template):
        raise InvalidDocumentError("digest does not match the template (corrupt or hand-edited document)")
    _check_object(doc.get("response_format"), "response_format")
    _check_object(doc.get("model_config"), "model_config")
    tags = doc.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise InvalidDocumentError("tags must map strings to strings")
    experiment = doc.get("experiment")
    if experiment is not None:
        if not isinstance(experiment, dict):
            raise InvalidDocumentError("experiment must be an object or null")
        candidate = experiment.get("candidate")
        if not isinstance(candidate, dict) or not isinstance(candidate.get("alias"), str):
            raise InvalidDocumentError("experiment.candidate must be an object with an alias")
        _check_version(candidate.get("version"), "experiment.candidate")
        _check_template(candidate.get("template"), "experiment.candidate")
        if verify_digest and candidate.get("digest") not in (None, template_digest(candidate["template"])):
            raise InvalidDocumentError("experiment.candidate.digest does not match its template")
        _check_object(candidate.get("response_format"), "experiment.candidate.response_format")
        _check_object(candidate.get("model_config"), "experiment.candidate.model_config")
        weight = experiment.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 100:
            raise InvalidDocumentError("experiment.weight must be a number from 0 to 100")
    return doc


def parse_document(raw: bytes | str) -> dict[str, Any]:
    """Decode and validate one projection file or HTTP body."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidDocumentError(f"not valid JSON ({exc}); a partial or corrupt write?") from exc
    return validate_document(doc)


def _ms_to_rfc3339(value: Any) -> str | None:
    from datetime import UTC, datetime  # only the MLflow fallback needs it

    try:
        ms = int(value)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def document_from_model_version(model_version: dict[str, Any], *, alias: str | None) -> dict[str, Any]:
    """A projection document built from MLflow's REST `model_version` object of a prompt version.

    Raises InvalidDocumentError when the registered model is not a prompt.
    """
    raw_tags = model_version.get("tags") or []
    tags = {t.get("key"): t.get("value") for t in raw_tags if isinstance(t, dict)}
    text = tags.get(MLFLOW_TEXT_TAG)
    if not isinstance(text, str):
        raise InvalidDocumentError(f"{model_version.get('name')!r} is a registered model, not a prompt")
    template: Any = text
    if tags.get(MLFLOW_TYPE_TAG) == "chat":
        try:
            template = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidDocumentError("chat prompt template is not valid JSON") from exc

    def _json_tag(key: str) -> Any:
        value = tags.get(key)
        if value is None:
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None

    name = str(model_version.get("name"))
    version = int(model_version.get("version", 0))
    user_tags = {
        str(k): str(v)
        for k, v in tags.items()
        if isinstance(k, str) and not k.startswith(("mlflow.", "_mlflow")) and v is not None
    }
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "name": name,
        "alias": alias if alias is not None else "",
        "version": version,
        "uri": f"prompts:/{name}@{alias}" if alias is not None else f"prompts:/{name}/{version}",
        "digest": template_digest(template),
        "template": template,
        "response_format": _json_tag(MLFLOW_RESPONSE_FORMAT_TAG),
        "model_config": _json_tag(MLFLOW_MODEL_CONFIG_TAG),
        "tags": user_tags,
        "updated": _ms_to_rfc3339(model_version.get("last_updated_timestamp")),
        "experiment": None,
    }
    return validate_document(doc, pinned=alias is None)
