"""`promptalias experiment`: the pure parts (tables, the status report, the next-step timer)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from promptalias.cli.cluster import Cluster
from promptalias.cli.errors import EXIT_GITOPS, EXIT_OK, EXIT_PENDING, CliError
from promptalias.cli.experiment_cmd import (
    cmd_abort,
    cmd_promote,
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


# ---- commands against a fake cluster (the cli.cluster.Cluster Protocol) ---------------------------


class ExperimentCluster:
    """A `Cluster` whose experiment reads follow a script (the last state repeats)."""

    default_namespace = "billing"

    def __init__(self, states: list[dict[str, Any]], baseline: dict[str, Any] | None = None) -> None:
        self.states = states
        self.reads = 0
        self.baseline = baseline
        self.patches: list[Mapping[str, Any]] = []

    def list_aliases(self, namespace: str | None) -> list[dict[str, Any]]:
        return [self.baseline] if self.baseline else []

    def get_alias(self, namespace: str, name: str) -> dict[str, Any]:
        if self.baseline is None:
            raise CliError(f"PromptAlias {name!r}: not found", "check the name")
        return self.baseline

    def patch_alias(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        raise AssertionError("experiment commands never patch the baseline")

    def list_experiments(self, namespace: str) -> list[dict[str, Any]]:
        return [self.states[0]]

    def get_experiment(self, namespace: str, name: str) -> dict[str, Any]:
        state = self.states[min(self.reads, len(self.states) - 1)]
        self.reads += 1
        return state

    def patch_experiment(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.patches.append(patch)
        return self.states[0]

    def get_registry(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        raise AssertionError("not used")

    def latest_warning(self, namespace: str, name: str, since: datetime) -> str | None:
        return None

    def close(self) -> None:
        pass


def _argv(*words: str) -> argparse.Namespace:
    return build_parser().parse_args(["experiment", *words])


def test_abort_asks_and_waits_for_the_phase(capsys: pytest.CaptureFixture[str]) -> None:
    cluster: Cluster = ExperimentCluster(
        [experiment(**PROGRESSING), experiment(**PROGRESSING), experiment(phase="Aborted", currentWeight=0)]
    )
    assert cmd_abort(_argv("abort", "parser-ab"), cluster) == EXIT_OK
    assert isinstance(cluster, ExperimentCluster)
    assert list(cluster.patches[0]["metadata"]["annotations"]) == ["promptalias.io/abort"]
    assert "aborted: the candidate of billing/parser-ab receives no traffic" in capsys.readouterr().out


def test_a_new_stalled_condition_is_a_refusal() -> None:
    refused = {
        **PROGRESSING,
        "conditions": [
            {
                "type": "Stalled",
                "status": "True",
                "reason": "InvalidCandidate",
                "message": "the candidate is the baseline's version",
                "lastTransitionTime": "2999-01-01T00:00:00Z",
            }
        ],
    }
    cluster = ExperimentCluster([experiment(**PROGRESSING), experiment(**refused)], baseline=BASELINE)
    with pytest.raises(CliError) as info:
        cmd_promote(_argv("promote", "parser-ab"), cluster)
    assert info.value.code == EXIT_PENDING
    assert "the operator refused: InvalidCandidate: the candidate is the baseline's version" in str(
        info.value
    )


def test_promote_of_a_gitops_baseline_prints_the_git_change(capsys: pytest.CaptureFixture[str]) -> None:
    declared = {
        **BASELINE,
        "metadata": {
            "name": "parser",
            "namespace": "billing",
            "annotations": {"promptalias.io/gitops": "true"},
        },
    }
    cluster = ExperimentCluster([experiment(**PROGRESSING)], baseline=declared)
    assert cmd_promote(_argv("promote", "parser-ab"), cluster) == EXIT_GITOPS
    out = capsys.readouterr()
    assert "version: 4  # was 3" in out.out
    assert "GitOps (promptalias.io/gitops=true)" in out.err
