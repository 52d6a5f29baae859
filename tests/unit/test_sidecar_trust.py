"""The sidecar believes only projections the operator wrote (owner reference + projection name)."""

from __future__ import annotations

from typing import Any

import pytest

from promptalias.sidecar.trust import untrusted_reason


def cm(name: str, owners: list[dict[str, Any]] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "promptalias"}}
    if owners is not None:
        meta["ownerReferences"] = owners
    return {"metadata": meta}


def ref(name: str = "parser", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "promptalias.io/v1alpha1",
        "kind": "PromptAlias",
        "name": name,
        "uid": "u",
        "controller": True,
        **extra,
    }


def test_operator_projection_is_trusted() -> None:
    assert untrusted_reason(cm("promptalias-parser", [ref()])) is None


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        (cm("promptalias-parser", None), "no controller ownerReference"),
        (cm("promptalias-parser", []), "no controller ownerReference"),
        (cm("promptalias-parser", [ref(controller=False)]), "no controller ownerReference"),
        (cm("promptalias-parser", [ref(kind="Deployment")]), "no controller ownerReference"),
        (cm("promptalias-parser", [ref(apiVersion="evil.io/v1")]), "no controller ownerReference"),
        (cm("promptalias-other", [ref()]), "whose projection is 'promptalias-parser'"),
        (cm("promptalias-parser", [ref(name="")]), "whose projection is ''"),
    ],
)
def test_forged_projections_are_not(obj: dict[str, Any], why: str) -> None:
    reason = untrusted_reason(obj)
    assert reason is not None
    assert why in reason
