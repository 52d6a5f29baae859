"""Unit tests of the pure projection rendering (docs/contracts.md, "Projection file")."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from promptalias.projection import render
from promptalias.projection.render import (
    ProjectionError,
    ProjectionTooLarge,
    build_configmap,
    configmap_name,
    content_hash,
    label_value,
    projection_key,
    render_projection,
    template_digest,
)

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CHAT = [
    {"role": "system", "content": "You parse {{kind}} invoices."},
    {"role": "user", "content": "{{text}}"},
]


def _doc(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "name": "invoice-parser",
        "alias": "production",
        "version": 3,
        "template": "Parse {{invoice}}",
        "response_format": None,
        "model_config": {"temperature": 0.1},
        "tags": {"team": "billing"},
        "updated": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    kwargs.update(overrides)
    return render_projection(**kwargs)


def test_document_matches_contract() -> None:
    doc = _doc()
    assert doc == {
        "schema": 1,
        "name": "invoice-parser",
        "alias": "production",
        "version": 3,
        "uri": "prompts:/invoice-parser@production",
        "digest": template_digest("Parse {{invoice}}"),
        "template": "Parse {{invoice}}",
        "response_format": None,
        "model_config": {"temperature": 0.1},
        "tags": {"team": "billing"},
        "updated": "2025-01-02T03:04:05Z",
        "experiment": None,
    }
    # The document survives a JSON round trip unchanged (it is what the file holds).
    assert json.loads(render.serialize_document(doc)) == doc


def test_updated_is_normalised_to_utc() -> None:
    tz = timezone(timedelta(hours=2))
    assert _doc(updated=datetime(2025, 1, 2, 5, 4, 5, tzinfo=tz))["updated"] == "2025-01-02T03:04:05Z"
    assert _doc(updated="2025-01-02T03:04:05.123Z")["updated"] == "2025-01-02T03:04:05.123Z"
    with pytest.raises(ProjectionError, match="timezone"):
        _doc(updated=datetime(2025, 1, 2))


def test_chat_template_and_digest() -> None:
    doc = _doc(template=CHAT)
    assert doc["template"] == CHAT
    assert doc["digest"] == template_digest(CHAT)
    assert doc["digest"] != template_digest("Parse {{invoice}}")


def test_template_digest_is_canonical_and_stable() -> None:
    # Key order of chat messages does not matter; the value is the sha256 of canonical JSON.
    reordered = [{"content": m["content"], "role": m["role"]} for m in CHAT]
    assert template_digest(CHAT) == template_digest(reordered)
    assert template_digest(tuple(CHAT)) == template_digest(CHAT)
    # Pinned: sha256 of the JSON string '"Hello {{name}}"'. A change here is a schema change.
    assert template_digest("Hello {{name}}") == (
        "sha256:8cc19e2aa24e60f158961c2c549b6414ae7cf7af365819e5121cd8f212ece5fd"
    )
    assert template_digest("é") == "sha256:" + hashlib.sha256('"é"'.encode()).hexdigest()


@pytest.mark.parametrize(
    "bad",
    [42, None, [{"role": "user"}], ["text"], b"bytes"],
)
def test_bad_templates_are_refused(bad: Any) -> None:
    with pytest.raises(ProjectionError):
        template_digest(bad)
    with pytest.raises(ProjectionError):
        _doc(template=bad)


@pytest.mark.parametrize("version", [0, -1, "3", 2.0, True])
def test_bad_versions_are_refused(version: Any) -> None:
    with pytest.raises(ProjectionError, match="version"):
        _doc(version=version)


def test_bad_tags_and_objects_are_refused() -> None:
    with pytest.raises(ProjectionError, match="tags"):
        _doc(tags={"a": 1})
    with pytest.raises(ProjectionError, match="model_config"):
        _doc(model_config=["x"])
    with pytest.raises(ProjectionError, match="JSON"):
        _doc(model_config={"t": float("nan")})


def test_experiment_is_rendered_with_candidate_uri_and_digest() -> None:
    doc = _doc(
        experiment={
            "candidate": {"alias": "experimental-parser", "version": 4, "template": CHAT},
            "weight": 12.5,
            "key": "user",
        }
    )
    assert doc["experiment"] == {
        "candidate": {
            "alias": "experimental-parser",
            "version": 4,
            "uri": "prompts:/invoice-parser@experimental-parser",
            "template": CHAT,
            "digest": template_digest(CHAT),
            "response_format": None,
            "model_config": None,
        },
        "weight": 12.5,
        "key": "user",
    }


@pytest.mark.parametrize(
    ("experiment", "match"),
    [
        ({"weight": 10}, "candidate"),
        ({"candidate": {"alias": "", "version": 1, "template": "x"}, "weight": 10}, "alias"),
        ({"candidate": {"alias": "c", "version": 0, "template": "x"}, "weight": 10}, "version"),
        ({"candidate": {"alias": "c", "version": 1, "template": 5}, "weight": 10}, "template"),
        ({"candidate": {"alias": "c", "version": 1, "template": "x"}, "weight": 101}, "weight"),
        ({"candidate": {"alias": "c", "version": 1, "template": "x"}, "weight": True}, "weight"),
        ({"candidate": {"alias": "c", "version": 1, "template": "x"}, "weight": 1, "key": 3}, "key"),
    ],
)
def test_bad_experiments_are_refused(experiment: dict[str, Any], match: str) -> None:
    with pytest.raises(ProjectionError, match=match):
        _doc(experiment=experiment)


def test_projection_key() -> None:
    assert projection_key("invoice-parser", "production") == "invoice-parser.production.json"
    # Prompt names may contain dots; aliases never do, so the key splits at its last two dots.
    key = projection_key("team.invoice_parser", "prod-2")
    assert key.removesuffix(".json").rsplit(".", 1) == ["team.invoice_parser", "prod-2"]
    for name, alias in [
        ("", "a"),
        ("p", ""),
        ("p", "a.b"),
        ("p", "a/b"),
        ("p", "prodüction"),
        ("p" * 250, "a"),
    ]:
        with pytest.raises(ProjectionError):
            projection_key(name, alias)


def test_configmap_name_short_and_long() -> None:
    assert configmap_name("invoice-parser-production") == "promptalias-invoice-parser-production"
    long = "a" * 240 + ".b" * 6
    name = configmap_name(long)
    assert len(name) <= 253
    assert DNS1123_SUBDOMAIN.match(name)
    assert name == configmap_name(long)  # deterministic
    assert name != configmap_name(long[:-1] + "c")  # the hash tells long names apart
    assert name.startswith("promptalias-aaaa")
    odd = configmap_name("Weird_Name")
    assert DNS1123_SUBDOMAIN.match(odd)
    assert len(configmap_name("x" * 253)) <= 253
    with pytest.raises(ProjectionError):
        configmap_name("")


@pytest.mark.parametrize("long", ["a" * 242, "a" * 240 + ".b" * 6, "x-" * 126 + "y"])
def test_a_plain_name_never_equals_another_names_hashed_form(long: str) -> None:
    """A 241-character name spelled like another's hashed 253-character form gets its own ConfigMap."""
    hashed = configmap_name(long)
    assert hashed != "promptalias-" + long
    impostor = hashed.removeprefix("promptalias-")  # a valid PromptAlias name of <= 241 characters
    assert len(impostor) <= 241
    assert DNS1123_SUBDOMAIN.match(impostor)
    assert configmap_name(impostor) != hashed
    assert DNS1123_SUBDOMAIN.match(configmap_name(impostor))
    assert configmap_name("ends-in-hex-0123456789abcdef") != "promptalias-ends-in-hex-0123456789abcdef"
    assert configmap_name("ends-in-hex-0123456789abcdeg") == "promptalias-ends-in-hex-0123456789abcdeg"


@pytest.mark.parametrize("value", ["production", "a", "invoice_parser.v2", "A-b_c.d"])
def test_label_value_keeps_valid_values(value: str) -> None:
    assert label_value(value) == value


@pytest.mark.parametrize("value", ["x" * 64, "-leading", "trailing.", "prodüction", "a b", "_", "ü"])
def test_label_value_hashes_invalid_values(value: str) -> None:
    out = label_value(value)
    assert out != value
    assert len(out) <= 63
    assert LABEL_VALUE.match(out)
    assert out == label_value(value)


def test_build_configmap() -> None:
    doc = _doc()
    cm = build_configmap("billing", "invoice-parser-production", "uid-1", doc)
    assert cm["apiVersion"] == "v1"
    assert cm["kind"] == "ConfigMap"
    meta = cm["metadata"]
    assert meta["name"] == "promptalias-invoice-parser-production"
    assert meta["namespace"] == "billing"
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "promptalias",
        "promptalias.io/prompt": "invoice-parser",
        "promptalias.io/alias": "production",
    }
    assert meta["annotations"]["promptalias.io/content-hash"] == content_hash(doc)
    assert meta["annotations"]["promptalias.io/version"] == "3"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "promptalias.io/v1alpha1",
            "kind": "PromptAlias",
            "name": "invoice-parser-production",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert list(cm["data"]) == ["invoice-parser.production.json"]
    assert json.loads(cm["data"]["invoice-parser.production.json"]) == doc


def test_label_of_unusual_alias_is_hashed_but_annotation_is_exact() -> None:
    doc = _doc(alias="x" * 70)
    meta = build_configmap("ns", "pa", "uid", doc)["metadata"]
    assert meta["labels"]["promptalias.io/alias"] == label_value("x" * 70)
    assert meta["annotations"]["promptalias.io/alias"] == "x" * 70


def test_content_hash_skips_no_op_writes() -> None:
    first = _doc()
    later = _doc(updated=datetime(2026, 1, 1, tzinfo=UTC))
    assert content_hash(first) == content_hash(later)
    assert content_hash(first) != content_hash(_doc(version=4))
    assert content_hash(first) != content_hash(_doc(template="Parse {{invoice}}!"))
    assert content_hash(first) != content_hash(_doc(tags={"team": "other"}))
    # Insertion order of input mappings does not matter.
    assert content_hash(_doc(tags={"a": "1", "b": "2"})) == content_hash(_doc(tags={"b": "2", "a": "1"}))


def test_render_is_deterministic() -> None:
    a = build_configmap("ns", "pa", "uid", _doc(model_config={"a": 1, "b": 2}))
    b = build_configmap("ns", "pa", "uid", _doc(model_config={"b": 2, "a": 1}))
    assert a == b
    assert render.canonical_json(a) == render.canonical_json(b)


def test_too_large_is_refused_never_truncated() -> None:
    just_fits = "x" * (render.MAX_CONFIGMAP_BYTES - 4096)
    cm = build_configmap("ns", "pa", "uid", _doc(template=just_fits))
    assert json.loads(cm["data"]["invoice-parser.production.json"])["template"] == just_fits
    with pytest.raises(ProjectionTooLarge) as info:
        build_configmap("ns", "pa", "uid", _doc(template="x" * render.MAX_CONFIGMAP_BYTES))
    assert info.value.size > info.value.limit == 1024 * 1024
    assert "1048576" in str(info.value)
    assert isinstance(info.value, ProjectionError)


def test_size_is_counted_in_utf8_bytes() -> None:
    # 400k three-byte characters: 1.2 MB although only 400k characters.
    with pytest.raises(ProjectionTooLarge):
        build_configmap("ns", "pa", "uid", _doc(template="€" * 400_000))


def test_client_reads_the_same_canonical_form() -> None:
    # The client (stdlib only, no import of this module) re-implements canonical_json and the digest;
    # both sides must agree byte for byte or every document would fail its digest check.
    from promptalias.client import _document

    for value in ["Hello {{x}}", "é ü 日本", CHAT, {"b": 1, "a": [1.5, None, True]}, ""]:
        assert _document.canonical_json(value) == render.canonical_json(value)
    templates: list[Any] = ["Hello {{x}}", CHAT, "é"]
    for template in templates:
        assert _document.template_digest(template) == template_digest(template)
    doc = _doc(
        template=CHAT, experiment={"candidate": {"alias": "c", "version": 4, "template": "x"}, "weight": 5}
    )
    assert _document.parse_document(render.serialize_document(doc)) == doc
