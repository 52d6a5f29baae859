"""When the operator must re-apply a projection ConfigMap it applied before."""

from __future__ import annotations

import json
from typing import Any

from promptalias.projection.render import build_configmap, content_hash, render_projection
from promptalias.projection.verify import drift_reason, owner_uid, valid_hash


def body() -> dict[str, Any]:
    doc = render_projection(
        name="invoice-parser",
        alias="production",
        version=3,
        template="v3 {{text}}",
        response_format=None,
        model_config=None,
        tags={},
        updated="2026-01-01T00:00:00Z",
    )
    return build_configmap("billing", "parser", "uid-1", doc)


def test_the_projection_as_applied_is_fine() -> None:
    cm = body()
    expected = cm["metadata"]["annotations"]["promptalias.io/content-hash"]
    assert owner_uid(cm) == "uid-1"
    assert drift_reason("MODIFIED", cm, expected) is None
    assert drift_reason(None, cm, expected) is None


def test_deleted_edited_or_replaced_projections_are_restored() -> None:
    cm = body()
    expected = cm["metadata"]["annotations"]["promptalias.io/content-hash"]
    assert drift_reason("DELETED", cm, expected) == "deleted"
    (key,) = cm["data"]
    edited = json.loads(cm["data"][key])
    edited["template"] = "by hand"
    tampered = {**cm, "data": {key: json.dumps(edited)}}  # hash annotation kept
    assert drift_reason("MODIFIED", tampered, expected) == "its data was edited"
    assert drift_reason("MODIFIED", {**cm, "data": {key: "not json"}}, expected) is not None
    assert drift_reason("MODIFIED", {**cm, "data": {}}, expected) is not None
    other = {
        **cm,
        "metadata": {**cm["metadata"], "annotations": {"promptalias.io/content-hash": content_hash(edited)}},
    }
    other["data"] = {key: json.dumps(edited)}
    assert drift_reason("MODIFIED", other, expected) == "it holds another projection"


def test_only_promptalias_controllers_count() -> None:
    cm = body()
    cm["metadata"]["ownerReferences"][0]["kind"] = "Deployment"
    assert owner_uid(cm) is None


def test_start_up_trusts_only_an_intact_projections_hash() -> None:
    """The hash start-up records per owner (handlers/startup.py): what the ConfigMap really holds."""
    cm = body()
    assert valid_hash(cm) == cm["metadata"]["annotations"]["promptalias.io/content-hash"]
    (key,) = cm["data"]
    edited = json.loads(cm["data"][key])
    edited["template"] = "by hand"
    assert valid_hash({**cm, "data": {key: json.dumps(edited)}}) is None  # annotation kept, data edited
    assert valid_hash({**cm, "data": {}}) is None
    assert valid_hash({**cm, "metadata": {**cm["metadata"], "annotations": {}}}) is None
