"""Prompt URI parsing: the three accepted forms and clear refusals."""

from __future__ import annotations

import pytest

from promptalias.client import InvalidPromptURIError, PromptRef, parse_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("prompts:/invoice-parser@production", PromptRef("invoice-parser", alias="production")),
        ("prompts:/invoice-parser/production", PromptRef("invoice-parser", alias="production")),
        ("prompts:/invoice-parser/3", PromptRef("invoice-parser", version=3)),
        ("prompts:/invoice-parser/03", PromptRef("invoice-parser", version=3)),
        ("prompts:/team.parser_v2@exp-1", PromptRef("team.parser_v2", alias="exp-1")),
        ("prompts:/p@latest", PromptRef("p", alias="latest")),
        ("prompts:/p/latest", PromptRef("p", alias="latest")),
    ],
)
def test_accepted_forms(uri: str, expected: PromptRef) -> None:
    assert parse_uri(uri) == expected


def test_canonical_uri_and_key() -> None:
    assert parse_uri("prompts:/p/production").uri == "prompts:/p@production"
    assert parse_uri("prompts:/p/3").uri == "prompts:/p/3"
    assert parse_uri("prompts:/team.p@prod").key == "team.p.prod.json"
    with pytest.raises(ValueError, match="pinned"):
        _ = parse_uri("prompts:/p/3").key


@pytest.mark.parametrize(
    "uri",
    [
        "models:/p@prod",
        "p@prod",
        "prompts:/",
        "prompts:/p",
        "prompts:/p@",
        "prompts:/@prod",
        "prompts:/p/",
        "prompts:/p/a/b",
        "prompts:/p/0",
        "prompts://p@prod",
        "prompts:/a@b@c",
        "prompts:/p/a@b",
    ],
)
def test_refused(uri: str) -> None:
    with pytest.raises(InvalidPromptURIError) as info:
        parse_uri(uri)
    assert "prompts:/" in str(info.value)


def test_refs_are_immutable_and_hashable() -> None:
    ref = parse_uri("prompts:/p@prod")
    assert {ref, parse_uri("prompts:/p/prod")} == {ref}
    with pytest.raises(AttributeError):
        ref.alias = "x"
    with pytest.raises(ValueError, match="exactly one"):
        PromptRef("p")
