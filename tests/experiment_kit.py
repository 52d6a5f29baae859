"""The experiment the pure unit tests share: candidate experimental-parser v4 at 50% against the
baseline PromptAlias billing/parser-production (invoice-parser@production, pinned and resolved at v3).
Keyword arguments override single fields. THUMBS is a Success metric over MLflow feedback."""

from __future__ import annotations

from typing import Any

from promptalias.api.experiment import PromptExperimentSpec
from promptalias.reconcile.experiment import Baseline

THUMBS: dict[str, Any] = {
    "name": "thumbs",
    "role": "Success",
    "direction": "Higher",
    "mlflowFeedback": {"experiment": "app", "name": "thumbs", "aggregation": "Rate"},
}


def spec(**extra: Any) -> PromptExperimentSpec:
    body: dict[str, Any] = {
        "baseline": {"name": "parser-production"},
        "candidate": {"alias": "experimental-parser", "version": 4},
        "weight": 50,
    }
    body.update(extra)
    return PromptExperimentSpec.model_validate(body)


def baseline(**extra: Any) -> Baseline:
    values: dict[str, Any] = {
        "namespace": "billing",
        "name": "parser-production",
        "prompt": "invoice-parser",
        "alias": "production",
        "version": 3,
        "resolved_version": 3,
    }
    values.update(extra)
    return Baseline(**values)
