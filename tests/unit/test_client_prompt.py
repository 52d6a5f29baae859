"""`Prompt.format` against MLflow's own PromptVersion.format, plus immutability of the result."""

from __future__ import annotations

from typing import Any

import pytest

from promptalias.client import Prompt, PromptFormatError
from promptalias.client._prompt import prompt_from_document
from promptalias.projection.render import render_projection

CHAT = [
    {"role": "system", "content": "You are a {{ style }} assistant for {{company}}."},
    {"role": "user", "content": "{{question}}"},
]

CASES: list[tuple[Any, dict[str, Any]]] = [
    ("Hello, {{title}} {{name}}!", {"title": "Ms", "name": "Alice"}),
    ("Hello, {{ name }}!", {"name": "Bob", "unused": 1}),
    ("{{a}}{{a}} {{b}}", {"a": 1, "b": None}),
    ("path C:\\new\\{{x}}", {"x": "\\u00e9\\n"}),
    ("nothing to fill", {}),
    ("{{a.b}} and {{ a }}", {"a.b": "dotted", "a": "plain"}),
    ("{single} {{x}}", {"x": "{y}"}),
    (CHAT, {"style": "terse", "company": "ACME", "question": "Why?"}),
]


@pytest.fixture(scope="module")
def mlflow_prompt_version() -> Any:
    pv = pytest.importorskip("mlflow.entities.model_registry.prompt_version")
    return pv.PromptVersion


@pytest.mark.parametrize(("template", "values"), CASES)
def test_format_matches_mlflow(mlflow_prompt_version: Any, template: Any, values: dict[str, Any]) -> None:
    ours = Prompt("p", 1, template)
    theirs = mlflow_prompt_version("p", 1, template)
    assert ours.format(**values) == theirs.format(**values)
    assert ours.variables == theirs.variables
    assert ours.to_single_brace_format() == theirs.to_single_brace_format()
    assert ours.is_text_prompt == theirs.is_text_prompt


@pytest.mark.parametrize(
    ("template", "values"),
    [("Hello {{name}} from {{place}}", {"name": "A"}), (CHAT, {"style": "x"})],
)
def test_missing_variables_match_mlflow(
    mlflow_prompt_version: Any, template: Any, values: dict[str, Any]
) -> None:
    ours = Prompt("p", 1, template)
    theirs = mlflow_prompt_version("p", 1, template)
    with pytest.raises(PromptFormatError) as info:
        ours.format(**values)
    with pytest.raises(Exception, match="Missing variables"):
        theirs.format(**values)
    assert info.value.missing == theirs.variables - values.keys()
    assert "allow_partial" in str(info.value)
    partial = ours.format(allow_partial=True, **values)
    assert isinstance(partial, Prompt)
    assert partial.template == theirs.format(allow_partial=True, **values).template
    assert (partial.name, partial.version, partial.digest) == (ours.name, ours.version, ours.digest)


def test_jinja_templates_match_mlflow(mlflow_prompt_version: Any) -> None:
    pytest.importorskip("jinja2")
    template = "Hello {% if name %}{{ name }}{% else %}Guest{% endif %}!"
    for values in ({"name": "Alice"}, {}):
        assert Prompt("p", 1, template).format(**values) == mlflow_prompt_version("p", 1, template).format(
            **values
        )


def test_values_are_not_expanded_twice() -> None:
    # MLflow substitutes key by key, so a value holding "{{b}}" could be expanded by a later key;
    # we substitute in one pass and treat values as data.
    assert Prompt("p", 1, "{{a}} {{b}}").format(a="{{b}}", b="B") == "{{b}} B"


def test_chat_template_is_a_fresh_copy_every_time() -> None:
    prompt = Prompt("p", 1, CHAT)
    messages = prompt.template
    assert isinstance(messages, list)
    messages.append({"role": "user", "content": "injected"})
    messages[0]["content"] = "changed"
    assert prompt.template == CHAT
    formatted = prompt.format(style="s", company="c", question="q")
    assert isinstance(formatted, list)
    formatted.clear()
    assert len(prompt.format_messages(style="s", company="c", question="q")) == 2
    with pytest.raises(TypeError, match="chat prompt"):
        prompt.format_text()
    assert Prompt("p", 1, "{{x}}").format_text(x=1) == "1"
    with pytest.raises(TypeError, match="text prompt"):
        Prompt("p", 1, "{{x}}").format_messages(x=1)


def test_prompt_is_immutable() -> None:
    prompt = Prompt("p", 1, "x", model_config={"temperature": 0.2}, tags={"a": "b"})
    with pytest.raises(AttributeError):
        prompt.version = 2
    with pytest.raises(AttributeError):
        del prompt.name
    config = prompt.model_config
    assert config == {"temperature": 0.2}
    config["temperature"] = 1.0
    assert prompt.model_config == {"temperature": 0.2}
    prompt.tags["a"] = "z"
    assert prompt.tags == {"a": "b"}


def test_prompt_from_document() -> None:
    doc = render_projection(
        name="invoice-parser",
        alias="production",
        version=3,
        template=CHAT,
        response_format={"type": "object"},
        model_config={"temperature": 0},
        tags={"team": "billing"},
        updated="2025-01-01T00:00:00Z",
    )
    prompt = prompt_from_document(doc, source="files")
    assert (prompt.name, prompt.alias, prompt.version) == ("invoice-parser", "production", 3)
    assert prompt.uri == "prompts:/invoice-parser@production"
    assert prompt.digest == doc["digest"]
    assert prompt.template == CHAT
    assert prompt.response_format == {"type": "object"}
    assert prompt.model_config == {"temperature": 0}
    assert prompt.tags == {"team": "billing"}
    assert prompt.updated == "2025-01-01T00:00:00Z"
    assert prompt.source == "files"
    assert prompt.arm is None
    assert prompt.experiment_weight == 0
    assert "invoice-parser@production" in repr(prompt)
    pinned = prompt_from_document(doc, source="files", pinned=True)
    assert (pinned.alias, pinned.uri) == (None, "prompts:/invoice-parser/3")
    assert prompt == prompt_from_document(doc, source="sidecar")
    assert hash(prompt) == hash(prompt_from_document(doc, source="sidecar"))
