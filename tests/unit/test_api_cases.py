"""The Python twins of the apiserver rules refuse the same objects the apiserver refuses.

The cases live in tests/integration/fixtures/invalid/cases.yaml; test_crd_validation.py proves the
apiserver refuses each one. Here the same objects go through the pydantic models. When the expected
fragment is one of our CEL rule messages, the Python error must carry the same words.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from promptalias.api import RESOURCES, Resource
from promptalias.api.cel import VALIDATIONS_KEY
from promptalias.api.schema import build_crd

FIXTURES = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "integration" / "fixtures" / "invalid" / "cases.yaml").read_text()
)
KINDS: dict[str, type[Resource]] = {resource.KIND: resource for resource in RESOURCES}
PYTHON_CASES = [case for case in FIXTURES["cases"] if case.get("python", True)]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (the same as in the integration test)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _rule_messages(node: Any) -> list[str]:
    """Messages of the declared rules; map-key rules derived from pydantic key constraints have no
    twin message (pydantic reports its own key error)."""
    if isinstance(node, dict):
        found = [
            rule["message"]
            for rule in node.get(VALIDATIONS_KEY, [])
            if not rule["rule"].startswith("self.all(k,")
        ]
        return found + [message for value in node.values() for message in _rule_messages(value)]
    if isinstance(node, list):
        return [message for item in node for message in _rule_messages(item)]
    return []


RULE_MESSAGES = [message for resource in RESOURCES for message in _rule_messages(build_crd(resource))]


def test_every_base_object_is_valid() -> None:
    for kind, base in FIXTURES["bases"].items():
        KINDS[kind].from_body({"metadata": {"name": "base"}, **base})


@pytest.mark.parametrize("case", PYTHON_CASES, ids=[case["name"] for case in PYTHON_CASES])
def test_models_refuse_what_the_apiserver_refuses(case: dict[str, Any]) -> None:
    body = merge_patch(FIXTURES["bases"][case["kind"]], case["patch"])
    with pytest.raises(ValidationError) as caught:
        KINDS[case["kind"]].from_body({"metadata": {"name": "case"}, **body})
    if any(case["expect"] in message for message in RULE_MESSAGES):
        assert case["expect"] in str(caught.value)


def test_update_cases_are_valid_objects_on_their_own() -> None:
    """Transition rules have no Python twin: the patched object alone is valid; only the change is not."""
    for case in FIXTURES["updates"]:
        body = merge_patch(FIXTURES["bases"][case["kind"]], case["patch"])
        KINDS[case["kind"]].from_body({"metadata": {"name": "case"}, **body})
