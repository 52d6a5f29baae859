"""Helpers of the spec.analysis integration tests: the scenario (baseline v3, candidate v4 with an
analysis), traffic from examples/invoice-parser/traffic.py through the real projection, and waits on
the experiment's status."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from kit import apply_yaml, current_status, get_object, wait_for
from promptalias.testbed import Testbed

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "v{n}: extract the invoice fields from {{{{text}}}}"


def traffic_module() -> ModuleType:
    name = "invoice_parser_traffic"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / "invoice-parser" / "traffic.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def setup(testbed: Testbed, namespace: str, prompt: str, analysis: str, *, weight: int = 50) -> str:
    import mlflow.genai

    for n in range(1, 5):
        mlflow.genai.register_prompt(name=prompt, template=TEMPLATE.format(n=n))
    apply_yaml(
        testbed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptAlias
metadata: {{name: parser, namespace: {namespace}}}
spec: {{registryRef: {{name: mlflow}}, prompt: {prompt}, alias: production, version: 3}}
""",
    )
    wait_for(lambda: pa(testbed, namespace).get("resolvedVersion") == 3, 120, "the baseline at version 3")
    apply_yaml(
        testbed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptExperiment
metadata: {{name: v4, namespace: {namespace}}}
spec:
  baseline: {{name: parser}}
  candidate: {{alias: experimental-parser, version: 4}}
  weight: {weight}
  analysis:
{analysis}
""",
    )
    wait_for(
        lambda: (
            (current_status(exp(testbed, namespace)) or {}).get("phase") == "Completed"
            and (projection(testbed, namespace, prompt).get("experiment") or {}).get("weight") == weight
        ),
        120,
        "the split in the baseline's projection",
    )
    return "v4"


def pa(testbed: Testbed, namespace: str) -> dict[str, Any]:
    """The baseline's status, once written for its current generation (else empty)."""
    return current_status(get_object(testbed, "promptalias", namespace, "parser")) or {}


def exp(testbed: Testbed, namespace: str) -> dict[str, Any]:
    return get_object(testbed, "promptexperiment", namespace, "v4")


def projection(testbed: Testbed, namespace: str, prompt: str) -> dict[str, Any]:
    cm = get_object(testbed, "configmap", namespace, "promptalias-parser")
    doc: dict[str, Any] = json.loads(cm["data"][f"{prompt}.production.json"])
    return doc


def send_traffic(
    testbed: Testbed, namespace: str, prompt: str, experiment: str, behaviours: dict[int, Any], users: int
) -> Any:
    import mlflow

    traffic = traffic_module()
    mlflow.set_experiment(experiment)
    document = projection(testbed, namespace, prompt)
    from promptalias.client._prompt import prompt_from_document

    base = prompt_from_document(document, source="files")
    return traffic.serve(base, [f"user-{uuid.uuid4().hex[:6]}-{i}" for i in range(users)], behaviours)


def wait_exp(
    testbed: Testbed, namespace: str, ok: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    """Wait until the experiment's status (for its current generation) satisfies `ok`; return it."""

    def check() -> dict[str, Any] | None:
        obj = exp(testbed, namespace)
        return obj if current_status(obj) is not None and ok(obj) else None

    result: dict[str, Any] = wait_for(check, timeout, what)
    return result


def analysis_status(obj: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = (obj.get("status") or {}).get("analysis") or {}
    return result


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {}
    )
    return found


def feedback_metric(experiment: str, name: str = "thumbs", role: str = "Success", extra: str = "") -> str:
    direction = "Higher" if role == "Success" else "Lower"
    if role == "Success" and "minimumEffect" not in extra:
        # The tests simulate large effects on ~100 samples per arm: tune the test for them (the
        # default 5% would need thousands of samples before it could tell; docs/experiments.md).
        extra += ", minimumEffect: 0.5"
    return (
        f"      - {{name: {name}, role: {role}, direction: {direction}{extra}, "
        f"mlflowFeedback: {{experiment: {experiment}, name: {name}, aggregation: Rate}}}}"
    )
