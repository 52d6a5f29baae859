"""The CLI's one poll loop (cli/waiting.py): the goal, a refusal, and the timeout, on scripted reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from promptalias.cli import waiting
from promptalias.cli.errors import EXIT_PENDING, CliError


def script(*states: dict[str, Any]) -> tuple[Callable[[], Mapping[str, Any]], list[int]]:
    """A reader that returns `states` in turn (the last one repeats) and counts its reads."""
    reads = [0]

    def read() -> Mapping[str, Any]:
        reads[0] += 1
        return states[min(reads[0], len(states)) - 1]

    return read, reads


def test_poll_returns_the_first_accepted_reading() -> None:
    read, reads = script({"n": 1}, {"n": 2}, {"n": 3})
    got = waiting.poll(read, lambda obj, expired: obj["n"] == 2, 10.0, interval_s=0.0)
    assert got == {"n": 2}
    assert reads == [2]


def test_wait_until_done() -> None:
    read, _ = script({"phase": "Progressing"}, {"phase": "Aborted"})
    got = waiting.wait_until(
        read,
        lambda obj: obj["phase"] == "Aborted",
        10.0,
        refused=lambda obj: None,
        waiting_on=lambda obj: str(obj["phase"]),
        remedy="-",
    )
    assert got == {"phase": "Aborted"}


def test_a_refusal_ends_the_wait_before_the_timeout() -> None:
    read, reads = script({"phase": "Progressing"}, {"phase": "Stalled"})
    with pytest.raises(CliError) as info:
        waiting.wait_until(
            read,
            lambda obj: False,
            3600.0,
            refused=lambda obj: "the operator refused: X" if obj["phase"] == "Stalled" else None,
            waiting_on=lambda obj: str(obj["phase"]),
            remedy="-",
        )
    assert (info.value.problem, info.value.code) == ("the operator refused: X", EXIT_PENDING)
    assert reads == [2]


def test_the_timeout_names_what_the_object_still_shows() -> None:
    read, reads = script({"phase": "Progressing"})
    with pytest.raises(CliError) as info:
        waiting.wait_until(
            read,
            lambda obj: False,
            0.0,
            refused=lambda obj: None,
            waiting_on=lambda obj: f"phase {obj['phase']}",
            remedy="check that the operator runs",
        )
    assert (
        str(info.value)
        == "the operator did not finish within 0s (phase Progressing); check that the operator runs"
    )
    assert reads == [1]  # an expired wait still reads once: a finished object is never reported late


def test_stalled_and_annotations_of() -> None:
    obj = {
        "metadata": {"annotations": {"promptalias.io/takeover": "true"}},
        "status": {"conditions": [{"type": "Stalled", "status": "True", "reason": "R", "message": "M"}]},
    }
    assert waiting.stalled(obj) == ("R", "M")
    assert waiting.stalled({"status": {}}) is None
    assert waiting.annotations_of(obj) == {"promptalias.io/takeover": "true"}
    assert waiting.annotations_of({}) == {}
