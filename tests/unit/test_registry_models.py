"""Parsing of MLflow REST payloads (captured from mlflow 3.17.2) into registry dataclasses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from promptalias.registry import NotAPrompt, PromptState, PromptVersion, RegistryProtocolError
from promptalias.registry.errors import Call
from promptalias.registry.models import parse_prompt, parse_server_version, parse_version

CALL = Call(op="get version", uri="http://mlflow:5000", prompt="p1", version=2)

CHAT = [{"role": "system", "content": "You are {{x}}"}, {"role": "user", "content": "{{q}}"}]
SCHEMA = {
    "properties": {"total": {"title": "Total", "type": "number"}},
    "required": ["total"],
    "title": "R",
    "type": "object",
}

# registered-models/get?name=p1 as MLflow 3.17.2 answers it (latest_versions trimmed).
REGISTERED_PROMPT: dict[str, Any] = {
    "name": "p1",
    "creation_timestamp": 1795611726215,
    "last_updated_timestamp": 1795611727250,
    "description": "first",
    "latest_versions": [{"name": "p1", "version": "2", "tags": []}],
    "tags": [
        {"key": "mlflow.prompt.is_prompt", "value": "true"},
        {"key": "team", "value": "billing"},
        {"key": "_mlflow_experiment_ids", "value": ",0,"},
    ],
    "aliases": [{"alias": "production", "version": "1"}, {"alias": "staging", "version": "2"}],
}

CHAT_VERSION: dict[str, Any] = {
    "name": "p1",
    "version": "2",
    "creation_timestamp": 1795611727250,
    "last_updated_timestamp": 1795611727250,
    "current_stage": "None",
    "description": "chat",
    "source": "dummy-source",
    "run_id": "",
    "status": "READY",
    "tags": [
        {"key": "mlflow.prompt.is_prompt", "value": "true"},
        {"key": "_mlflow_prompt_type", "value": "chat"},
        {"key": "mlflow.prompt.text", "value": json.dumps(CHAT)},
        {"key": "_mlflow_prompt_response_format", "value": json.dumps(SCHEMA)},
        {"key": "_mlflow_prompt_model_config", "value": '{"model_name": "gpt-4", "temperature": 0.2}'},
        {"key": "approved", "value": "true"},
    ],
    "run_link": "",
}

TEXT_VERSION: dict[str, Any] = {
    "name": "p1",
    "version": "1",
    "creation_timestamp": 1795611726527,
    "description": "first",
    "tags": [
        {"key": "team", "value": "billing"},
        {"key": "mlflow.prompt.is_prompt", "value": "true"},
        {"key": "_mlflow_prompt_type", "value": "text"},
        {"key": "mlflow.prompt.text", "value": "Hello {{name}}"},
    ],
    "aliases": ["production"],
    "user_id": "alice",
}


def with_tags(payload: dict[str, Any], **changes: str | None) -> dict[str, Any]:
    tags = {t["key"]: t["value"] for t in payload["tags"]}
    for name, value in changes.items():
        key = name.replace("__", ".")
        if value is None:
            tags.pop(key, None)
        else:
            tags[key] = value
    return {**payload, "tags": [{"key": k, "value": v} for k, v in tags.items()]}


def test_prompt_carries_every_alias_and_only_user_tags() -> None:
    state = parse_prompt(REGISTERED_PROMPT, CALL)
    assert state == PromptState(
        name="p1",
        aliases={"production": 1, "staging": 2},
        tags={"team": "billing"},
        is_prompt=True,
        description="first",
        latest_version=2,
    )


def test_prompt_without_aliases_tags_or_versions() -> None:
    state = parse_prompt({"name": "model1", "creation_timestamp": 1}, CALL)
    assert state == PromptState(name="model1", aliases={}, tags={}, is_prompt=False)


def test_text_version() -> None:
    version = parse_version(TEXT_VERSION, CALL)
    assert version == PromptVersion(
        name="p1",
        version=1,
        template="Hello {{name}}",
        response_format=None,
        model_config=None,
        tags={"team": "billing"},
        commit_message="first",
        creation_timestamp_ms=1795611726527,
        user_id="alice",
    )
    assert not version.is_chat
    assert version.uri == "prompts:/p1/1"
    assert version.created_at == datetime(2026, 11, 25, 13, 2, 6, 527000, tzinfo=UTC)


def test_chat_version_with_response_format_and_model_config() -> None:
    version = parse_version(CHAT_VERSION, CALL)
    assert version.template == CHAT
    assert version.is_chat
    assert version.response_format == SCHEMA
    assert version.model_config == {"model_name": "gpt-4", "temperature": 0.2}
    assert version.tags == {"approved": "true"}
    assert version.commit_message == "chat"
    assert version.user_id is None


def test_version_without_type_tag_is_text() -> None:
    # Versions registered by older MLflow releases have no _mlflow_prompt_type tag.
    version = parse_version(with_tags(TEXT_VERSION, _mlflow_prompt_type=None), CALL)
    assert version.template == "Hello {{name}}"


def test_text_template_that_looks_like_json_stays_text() -> None:
    version = parse_version(with_tags(TEXT_VERSION, mlflow__prompt__text='[{"role": "x"}]'), CALL)
    assert version.template == '[{"role": "x"}]'


def test_model_version_that_is_not_a_prompt() -> None:
    plain = {"name": "model1", "version": "1", "source": "models:/x", "creation_timestamp": 1}
    with pytest.raises(NotAPrompt, match="registered model, not a prompt"):
        parse_version(plain, CALL)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (None, "model_version is not an object"),
        (with_tags(TEXT_VERSION, mlflow__prompt__text=None), "no template"),
        ({**TEXT_VERSION, "version": "three"}, "version is not an integer"),
        ({**TEXT_VERSION, "version": True}, "version is not an integer"),
        ({**TEXT_VERSION, "name": 7}, "name is not a string"),
        ({**TEXT_VERSION, "tags": {"k": "v"}}, "tags is not a list"),
        (with_tags(CHAT_VERSION, mlflow__prompt__text="not json"), "chat template is not valid JSON"),
        (with_tags(CHAT_VERSION, mlflow__prompt__text='[{"role": "user"}]'), "role, content"),
        (with_tags(CHAT_VERSION, _mlflow_prompt_response_format="{"), "not valid JSON"),
        (with_tags(CHAT_VERSION, _mlflow_prompt_model_config="[1]"), "is not an object"),
    ],
)
def test_unexpected_version_payloads_are_protocol_errors(payload: Any, match: str) -> None:
    with pytest.raises(RegistryProtocolError, match=match) as info:
        parse_version(payload, CALL)
    assert "http://mlflow:5000" in str(info.value)


def test_bad_alias_payload_is_a_protocol_error() -> None:
    with pytest.raises(RegistryProtocolError, match="alias version is not an integer"):
        parse_prompt({**REGISTERED_PROMPT, "aliases": [{"alias": "a", "version": None}]}, CALL)


def test_server_version() -> None:
    assert parse_server_version(b"3.17.2\n", CALL) == "3.17.2"
    with pytest.raises(RegistryProtocolError, match="not a version number"):
        parse_server_version(b"<html>login</html>", CALL)
