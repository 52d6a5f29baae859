"""`promptalias experiment`: the pure parts (tables, the status report, the next-step timer)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from promptalias.cli.experiment_cmd import (
    describe,
    experiment_row,
    history_rows,
    next_step_in,
    step_text,
)
from promptalias.cli.main import build_parser

NOW = datetime(2026, 11, 25, 10, 1, 0, tzinfo=UTC)


def experiment(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "parser-ab",
            "namespace": "billing",
            "creationTimestamp": "2026-11-25T09:00:00Z",
        },
        "spec": {
            "baseline": {"name": "parser"},
            "candidate": {"alias": "experimental-parser", "version": 4},
            "weight": 50,
            "routingKey": "tenant",
            "steps": [{"weight": 10, "pause": "2m"}, {"weight": 25}],
        },
        "status": status,
    }


PROGRESSING: dict[str, Any] = {
    "phase": "Progressing",
    "currentWeight": 10,
    "currentStep": 0,
    "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "receives 10%"}],
    "history": [
        {
            "time": "2026-11-25T10:00:00Z",
            "reason": "Started",
            "phase": "Progressing",
            "weight": 10,
            "step": 0,
            "message": "started",
        },
    ],
}
BASELINE = {
    "metadata": {"name": "parser"},
    "spec": {"prompt": "invoice-parser", "alias": "production", "version": 3},
    "status": {"resolvedVersion": 3},
}


def test_next_step_timer() -> None:
    assert next_step_in(experiment(**PROGRESSING), NOW) == 60.0
    paused = {**PROGRESSING, "phase": "Paused", "currentStep": 1}
    assert next_step_in(experiment(**paused), NOW) is None
    assert next_step_in(experiment(), NOW) is None


def test_rows_and_report() -> None:
    obj = experiment(**PROGRESSING)
    assert step_text(obj) == "1/2"
    assert experiment_row(obj, NOW) == [
        "parser-ab",
        "parser",
        "experimental-parser -> v4",
        "Progressing",
        "10%",
        "1/2",
        "True",
        "61m",
    ]
    report = describe(obj, BASELINE, NOW)
    assert "Baseline:    parser (invoice-parser@production: version 3)" in report
    assert "Routing key: tenant" in report
    assert "Weight:      10% of traffic to the candidate (final 50%, step 1/2)" in report
    assert "Next step:   in 60s" in report
    assert "Ready:       True Synced: receives 10%" in report
    assert "History:" in report
    assert "Started" in history_rows(PROGRESSING["history"])
    paused = experiment(**{**PROGRESSING, "phase": "Paused", "currentStep": 1})
    assert "waiting for `promptalias experiment resume`" in describe(paused, None, NOW)
    assert "parser (not found)" in describe(paused, None, NOW)
    pending = experiment(**PROGRESSING)
    pending["metadata"]["annotations"] = {"promptalias.io/promote": "x"}
    assert "Requests:    promptalias.io/promote (not yet handled)" in describe(pending, BASELINE, NOW)


def test_parser() -> None:
    args = build_parser().parse_args(
        ["experiment", "promote", "parser-ab", "-n", "billing", "--timeout", "2m"]
    )
    assert (args.action, args.name, args.namespace, args.timeout) == (
        "promote",
        "parser-ab",
        "billing",
        120.0,
    )
    args = build_parser().parse_args(["experiment", "status"])
    assert args.name is None
