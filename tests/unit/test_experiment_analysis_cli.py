"""`promptalias experiment status` shows the analysis table; `analyse` refuses to act."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import pytest

from experiment_kit import THUMBS
from promptalias.api.experiment import ExperimentAnalysis
from promptalias.cli.errors import CliError
from promptalias.cli.experiment_cmd import analysis_text, cmd_analyse, describe
from promptalias.reconcile.analysis import ArmData, Context, MetricData, decide
from promptalias.reconcile.stats import Summary

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def analysis_status() -> dict[str, Any]:
    spec = ExperimentAnalysis.model_validate({"minSamples": 100, "metrics": [THUMBS]})
    data = MetricData(
        ArmData(n=3000, summary=Summary.rate(3000, 1500), exposures=4000),
        ArmData(n=3000, summary=Summary.rate(3000, 1800), exposures=4000),
    )
    ctx = Context(now=NOW, started=NOW, window_start=NOW, weight=50, baseline_version=3, candidate_version=4)
    return decide(spec, {"thumbs": data}, ctx).status.to_dict()


def test_analysis_table_has_the_numbers() -> None:
    text = analysis_text(analysis_status())
    assert text.startswith("Analysis: Promote, look 1 at 2026-11-25T12:00:00Z")
    assert "significantly better" in text
    row = next(line for line in text.splitlines() if line.startswith("thumbs"))
    assert "v3 0.5 (n=3000)" in row
    assert "v4 0.6 (n=3000)" in row
    assert "+20.0%" in row
    assert "Better" in row
    assert "Sample ratio: 4000 / 4000" in text


def test_status_report_includes_the_analysis() -> None:
    obj = {
        "metadata": {"namespace": "billing", "name": "v4"},
        "spec": {"baseline": {"name": "parser"}, "candidate": {"alias": "exp", "version": 4}, "weight": 50},
        "status": {"phase": "Completed", "currentWeight": 50, "analysis": analysis_status()},
    }
    assert "Analysis: Promote" in describe(obj, None, NOW)


def test_analyse_without_dry_run_refuses() -> None:
    args = argparse.Namespace(name="v4", dry_run=False, namespace="billing")
    with pytest.raises(CliError, match="--dry-run"):
        cmd_analyse(args, None)  # type: ignore[arg-type]  # refused before any cluster call
