"""What the registry returns, and the pure parsing of MLflow's REST payloads into it.

A prompt is a registered model tagged `mlflow.prompt.is_prompt=true`; each prompt version is a
model version whose tags hold the template (`mlflow.prompt.text`), its type (`_mlflow_prompt_type`:
text or chat, a chat template being JSON), and optional JSON `_mlflow_prompt_response_format` and
`_mlflow_prompt_model_config` (names from mlflow/prompt/constants.py, MLflow 3.17).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from promptalias.registry.errors import Call, RegistryProtocolError, not_a_prompt

IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
PROMPT_TEXT_TAG = "mlflow.prompt.text"
PROMPT_TYPE_TAG = "_mlflow_prompt_type"
RESPONSE_FORMAT_TAG = "_mlflow_prompt_response_format"
MODEL_CONFIG_TAG = "_mlflow_prompt_model_config"
PROMPT_TYPE_CHAT = "chat"

# MLflow reserves these prefixes for its own bookkeeping (prompt text, type, linked experiments...).
_INTERNAL_TAG_PREFIXES = ("mlflow.", "_mlflow_")

Template = str | list[dict[str, Any]]


def is_internal_tag(key: str) -> bool:
    return key.startswith(_INTERNAL_TAG_PREFIXES)


@dataclass(frozen=True)
class PromptState:
    """A prompt as one `registered-models/get` returns it: every alias at once."""

    name: str
    aliases: dict[str, int]
    tags: dict[str, str]
    is_prompt: bool
    description: str | None = None
    latest_version: int | None = None


@dataclass(frozen=True)
class PromptVersion:
    """One immutable prompt version.

    `template`, `response_format` and `model_config` never change once registered. `tags` and
    `commit_message` can be edited in MLflow, so a cached copy may lag: read with
    `use_cache=False` when a decision depends on them. Instances may be shared through the cache:
    treat the dicts and lists as read-only.
    """

    name: str
    version: int
    template: Template
    response_format: dict[str, Any] | None
    model_config: dict[str, Any] | None
    tags: dict[str, str]
    commit_message: str | None
    creation_timestamp_ms: int
    user_id: str | None = None

    @property
    def is_chat(self) -> bool:
        return isinstance(self.template, list)

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.creation_timestamp_ms / 1000, tz=UTC)

    @property
    def uri(self) -> str:
        return f"prompts:/{self.name}/{self.version}"


@dataclass(frozen=True)
class ServerInfo:
    """The outcome of a successful `check()`."""

    uri: str
    version: str
    workspace: str | None
    authenticated: bool


def _protocol(call: Call, what: str) -> RegistryProtocolError:
    return RegistryProtocolError(
        f"MLflow at {call.uri} sent an unexpected payload to {call.op}{call.subject()}: {what}; "
        "is this an MLflow server of a supported version (3.x)?"
    )


def _obj(value: Any, call: Call, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _protocol(call, f"{what} is not an object")
    return value


def _int(value: Any, call: Call, what: str) -> int:
    # Protobuf JSON sends int64 as strings ("3"); accept real ints too.
    if isinstance(value, bool):
        raise _protocol(call, f"{what} is not an integer: {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _protocol(call, f"{what} is not an integer: {value!r}") from None


def _str(value: Any, call: Call, what: str) -> str:
    if not isinstance(value, str):
        raise _protocol(call, f"{what} is not a string: {value!r}")
    return value


def parse_tags(value: Any, call: Call) -> dict[str, str]:
    """MLflow sends tags as a list of {key, value}; an absent list means no tags."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise _protocol(call, "tags is not a list")
    tags: dict[str, str] = {}
    for item in value:
        entry = _obj(item, call, "a tag")
        tags[_str(entry.get("key"), call, "a tag key")] = str(entry.get("value", ""))
    return tags


def parse_prompt(payload: Any, call: Call) -> PromptState:
    """`registered_model` of registered-models/get (or one item of registered-models/search)."""
    model = _obj(payload, call, "registered_model")
    all_tags = parse_tags(model.get("tags"), call)
    aliases: dict[str, int] = {}
    for item in model.get("aliases") or []:
        entry = _obj(item, call, "an alias")
        aliases[_str(entry.get("alias"), call, "an alias name")] = _int(
            entry.get("version"), call, "alias version"
        )
    latest = [
        _int(_obj(v, call, "a latest version").get("version"), call, "latest version")
        for v in model.get("latest_versions") or []
    ]
    description = model.get("description")
    return PromptState(
        name=_str(model.get("name"), call, "name"),
        aliases=aliases,
        tags={k: v for k, v in all_tags.items() if not is_internal_tag(k)},
        is_prompt=all_tags.get(IS_PROMPT_TAG, "").lower() == "true",
        description=description if isinstance(description, str) and description else None,
        latest_version=max(latest) if latest else None,
    )


def _json_tag(tags: dict[str, str], key: str, call: Call) -> dict[str, Any] | None:
    raw = tags.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise _protocol(call, f"tag {key} is not valid JSON") from None
    if value is None:
        return None
    return _obj(value, call, f"tag {key}")


def parse_template(tags: dict[str, str], call: Call) -> Template:
    text = tags.get(PROMPT_TEXT_TAG)
    if text is None:
        raise _protocol(call, f"the version has no {PROMPT_TEXT_TAG} tag (no template)")
    if tags.get(PROMPT_TYPE_TAG) != PROMPT_TYPE_CHAT:
        return text
    try:
        messages = json.loads(text)
    except ValueError:
        raise _protocol(call, "the chat template is not valid JSON") from None
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages
    ):
        raise _protocol(call, "the chat template is not a list of {role, content} messages")
    return messages


def parse_version(payload: Any, call: Call) -> PromptVersion:
    """`model_version` of model-versions/get, registered-models/alias (GET) or model-versions/search."""
    mv = _obj(payload, call, "model_version")
    tags = parse_tags(mv.get("tags"), call)
    if tags.get(IS_PROMPT_TAG, "").lower() != "true":
        raise not_a_prompt(call)
    description = mv.get("description")
    user_id = mv.get("user_id")
    return PromptVersion(
        name=_str(mv.get("name"), call, "name"),
        version=_int(mv.get("version"), call, "version"),
        template=parse_template(tags, call),
        response_format=_json_tag(tags, RESPONSE_FORMAT_TAG, call),
        model_config=_json_tag(tags, MODEL_CONFIG_TAG, call),
        tags={k: v for k, v in tags.items() if not is_internal_tag(k)},
        commit_message=description if isinstance(description, str) and description else None,
        creation_timestamp_ms=_int(mv.get("creation_timestamp", 0), call, "creation_timestamp"),
        user_id=user_id if isinstance(user_id, str) and user_id else None,
    )


def parse_server_version(body: bytes, call: Call) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    head = text.split(".", 1)[0]
    if (
        not head.isdigit()
        or len(text) > 64
        or "." not in text
        or not all(c.isalnum() or c in ".-+" for c in text)
    ):
        # Not quoted: trackingUri may point at an internal service (registry/errors.py).
        raise _protocol(call, f"/version answered {len(body)} bytes that are not a version number")
    return text
