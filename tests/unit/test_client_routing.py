"""A/B routing: stable, documented hash; weights hold; same key → same arm in every process."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from promptalias.client import BASELINE, CANDIDATE, Prompt, routing_bucket
from promptalias.client._prompt import prompt_from_document
from promptalias.projection.render import render_projection


def _prompt(weight: float) -> Prompt:
    doc = render_projection(
        name="invoice-parser",
        alias="production",
        version=3,
        template="v3 {{x}}",
        response_format=None,
        model_config=None,
        tags={},
        updated="2025-01-01T00:00:00Z",
        experiment={
            "candidate": {"alias": "experimental-parser", "version": 4, "template": "v4 {{x}}"},
            "weight": weight,
            "key": "user",
        },
    )
    return prompt_from_document(doc, source="files")


def test_bucket_is_the_documented_hash() -> None:
    digest = hashlib.sha256(b"invoice-parser:production:user-42").digest()
    assert (
        routing_bucket("invoice-parser", "production", "user-42")
        == int.from_bytes(digest[:8], "big") % 10_000
    )
    # Pinned values: a change here re-routes every user of every experiment.
    assert [routing_bucket("invoice-parser", "production", f"user-{i}") for i in range(5)] == [
        2383,
        8279,
        4254,
        1596,
        5988,
    ]
    assert routing_bucket("p", "a", 7) == routing_bucket("p", "a", "7")


def test_same_key_same_arm_in_another_process() -> None:
    keys = [f"tenant-{i}" for i in range(200)]
    here = [routing_bucket("invoice-parser", "production", k) for k in keys]
    code = (
        "import json; from promptalias.client import routing_bucket; "
        f"print(json.dumps([routing_bucket('invoice-parser', 'production', k) for k in {keys!r}]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PYTHONPATH": ":".join(sys.path)},
    )
    assert out.stdout.strip() == str(here).replace("'", '"')


@pytest.mark.parametrize("weight", [0, 1, 10, 12.5, 50, 90, 100])
def test_weights_hold_within_two_percent(weight: float) -> None:
    prompt = _prompt(weight)
    n = 100_000
    candidates = sum(1 for i in range(n) if prompt.route(f"user-{i}").arm == CANDIDATE)
    assert abs(candidates / n * 100 - weight) <= 2.0
    if weight in (0, 100):
        assert candidates == n * weight / 100


def test_arms_carry_the_served_version() -> None:
    prompt = _prompt(50)
    arms = {prompt.route(f"k{i}") for i in range(50)}
    assert {(p.arm, p.alias, p.version) for p in arms} == {
        (BASELINE, "production", 3),
        (CANDIDATE, "experimental-parser", 4),
    }
    candidate = next(p for p in arms if p.arm == CANDIDATE)
    assert candidate.uri == "prompts:/invoice-parser@experimental-parser"
    assert candidate.format(x="!") == "v4 !"


def test_raising_the_weight_only_moves_keys_to_the_candidate() -> None:
    low, high = _prompt(10), _prompt(30)
    for i in range(5_000):
        if low.route(i).arm == CANDIDATE:
            assert high.route(i).arm == CANDIDATE
