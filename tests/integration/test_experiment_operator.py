"""PromptExperiment end to end: the session operator, the real apiserver and MLflow, the CLI.

10% with a step to 50%, promote through the baseline's spec, abort, resume a paused step, GitOps
promotion reported (not patched), the candidate alias and the audit tags on the MLflow side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from typing import Any

import pytest

from kit import OperatorProcess, after_polls, apply_yaml, condition_of, current_status, get_object, wait_for
from promptalias.client import CANDIDATE
from promptalias.client._document import validate_document
from promptalias.client._prompt import prompt_from_document
from promptalias.testbed import Testbed

pytestmark = pytest.mark.integration

TEMPLATE = "v{n}: extract the invoice fields from {{{{text}}}}"


# ---- helpers -------------------------------------------------------------------------------------


def register(prompt: str, count: int) -> None:
    import mlflow.genai

    for n in range(1, count + 1):
        mlflow.genai.register_prompt(name=prompt, template=TEMPLATE.format(n=n))


def mlflow_get(uri: str, path: str, **query: str) -> dict[str, Any]:
    url = f"{uri}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def aliases(uri: str, prompt: str) -> dict[str, int]:
    model = mlflow_get(uri, "registered-models/get", name=prompt)["registered_model"]
    return {a["alias"]: int(a["version"]) for a in model.get("aliases", [])}


def prompt_tags(uri: str, prompt: str) -> dict[str, str]:
    model = mlflow_get(uri, "registered-models/get", name=prompt)["registered_model"]
    return {t["key"]: t["value"] for t in model.get("tags", [])}


def version_tags(uri: str, prompt: str, version: int) -> dict[str, str]:
    found = mlflow_get(uri, "model-versions/get", name=prompt, version=str(version))["model_version"]
    return {t["key"]: t["value"] for t in found.get("tags", [])}


def baseline_yaml(namespace: str, name: str, prompt: str, version: int, annotations: str = "") -> str:
    meta = f"{{name: {name}, namespace: {namespace}{annotations}}}"
    return f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptAlias
metadata: {meta}
spec:
  registryRef: {{name: mlflow}}
  prompt: {prompt}
  alias: production
  version: {version}
"""


def experiment_yaml(
    namespace: str, name: str, baseline: str, version: int, weight: int, extra: str = ""
) -> str:
    return f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptExperiment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  baseline: {{name: {baseline}}}
  candidate: {{alias: experimental-parser, version: {version}}}
  weight: {weight}
  routingKey: user{extra}
"""


def pa_status(testbed: Testbed, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = get_object(testbed, "promptalias", namespace, name).get("status") or {}
    return result


def exp(testbed: Testbed, namespace: str, name: str) -> dict[str, Any]:
    return get_object(testbed, "promptexperiment", namespace, name)


def cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {}
    )
    return found


def wait_baseline(testbed: Testbed, namespace: str, name: str, version: int) -> None:
    def ready() -> bool:
        st = current_status(get_object(testbed, "promptalias", namespace, name))
        ready = condition_of(st, "Ready").get("status") == "True"
        return ready and (st or {}).get("resolvedVersion") == version

    wait_for(ready, 30, f"PromptAlias {name} Ready at version {version}")


def wait_phase(
    testbed: Testbed, namespace: str, name: str, phase: str, weight: int, timeout: float = 30
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj = exp(testbed, namespace, name)
        st = current_status(obj) or {}
        return obj if (st.get("phase"), st.get("currentWeight")) == (phase, weight) else None

    result: dict[str, Any] = wait_for(
        reached, timeout, f"experiment {name} {phase} at {weight}%", interval=0.1
    )
    return result


def projection(testbed: Testbed, namespace: str, pa: str, prompt: str) -> dict[str, Any]:
    cm = get_object(testbed, "configmap", namespace, f"promptalias-{pa}")
    doc: dict[str, Any] = json.loads(cm["data"][f"{prompt}.production.json"])
    return doc


def split_weight(testbed: Testbed, namespace: str, pa: str, prompt: str) -> int | None:
    experiment = projection(testbed, namespace, pa, prompt).get("experiment")
    return None if experiment is None else int(experiment["weight"])


def cli(testbed: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **testbed.env()}
    return subprocess.run(
        [sys.executable, "-m", "promptalias.cli.main", "experiment", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )


def events(testbed: Testbed, namespace: str, name: str) -> list[tuple[str, str, str]]:
    out = json.loads(testbed.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    return [
        (e["type"], e["reason"], e.get("message", ""))
        for e in out["items"]
        if e["involvedObject"].get("name") == name
    ]


# ---- tests ----------------------------------------------------------------------------------------


def test_ten_percent_steps_to_fifty_then_promote(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 4)
    apply_yaml(testbed, baseline_yaml(namespace, "parser", prompt_name, 3))
    wait_baseline(testbed, namespace, "parser", 3)
    steps = "\n  steps: [{weight: 10, pause: 3s}]"
    apply_yaml(testbed, experiment_yaml(namespace, "parser-ab", "parser", 4, 50, steps))

    started = wait_phase(testbed, namespace, "parser-ab", "Progressing", 10)
    assert started["status"]["currentStep"] == 0
    assert cond(started, "Ready")["status"] == "True"
    # The candidate alias exists in MLflow, claimed and audited.
    uri = testbed.mlflow_uri
    assert aliases(uri, prompt_name) == {"production": 3, "experimental-parser": 4}
    owner = json.loads(prompt_tags(uri, prompt_name)["promptalias.io/owner.experimental-parser"])
    assert owner["namespace"] == namespace
    assert owner["name"] == "promptexperiment/parser-ab"
    moved = json.loads(version_tags(uri, prompt_name, 4)["promptalias.io/moved.experimental-parser"])
    assert moved["by"].endswith(f"/{namespace}/promptexperiment/parser-ab")
    assert moved["replaced"] is None
    # The split reaches the baseline's projection; clients route with it.
    wait_for(lambda: split_weight(testbed, namespace, "parser", prompt_name) == 10, 10, "the 10% split")
    doc = projection(testbed, namespace, "parser", prompt_name)
    assert doc["version"] == 3
    assert "promptalias.io/moved.production" not in doc["tags"]
    assert doc["experiment"]["candidate"]["version"] == 4
    assert doc["experiment"]["candidate"]["template"] == TEMPLATE.format(n=4)
    assert doc["experiment"]["key"] == "user"
    validate_document(doc)
    prompt = prompt_from_document(doc, source="files")
    share = sum(prompt.route(f"user-{i}").arm == CANDIDATE for i in range(20_000)) / 20_000
    assert abs(share - 0.10) < 0.02

    # After the 3s pause: the final weight.
    completed = wait_phase(testbed, namespace, "parser-ab", "Completed", 50, timeout=20)
    wait_for(lambda: split_weight(testbed, namespace, "parser", prompt_name) == 50, 10, "the 50% split")
    reasons = [entry["reason"] for entry in completed["status"]["history"]]
    assert reasons == ["Started", "CandidateSet", "Completed"]
    printed = testbed.kubectl("get", "promptexperiment", "parser-ab", "-n", namespace).stdout
    assert "Completed" in printed
    assert "50" in printed

    status_out = cli(testbed, "status", "parser-ab", "-n", namespace)
    assert status_out.returncode == 0, status_out.stderr
    assert "Phase:       Completed" in status_out.stdout
    assert "experimental-parser -> version 4" in status_out.stdout

    promoted = cli(testbed, "promote", "parser-ab", "-n", namespace, "--timeout", "30s")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "now points at version 4" in promoted.stdout
    done = exp(testbed, namespace, "parser-ab")
    assert done["status"]["phase"] == "Promoted"
    assert done["status"]["currentWeight"] == 0
    assert "promptalias.io/promote" not in (done["metadata"].get("annotations") or {})
    history = done["status"]["history"]
    assert [h["reason"] for h in history[-2:]] == ["PromotionRequested", "Promoted"]
    assert history[-1]["actor"] == "kubectl-promptalias"
    # Through the baseline's own spec: Git-like source of truth, history names who moved it.
    pa = get_object(testbed, "promptalias", namespace, "parser")
    assert pa["spec"]["version"] == 4
    wait_baseline(testbed, namespace, "parser", 4)
    assert pa_status(testbed, namespace, "parser")["history"][-1]["actor"] == "promptalias-experiment"
    assert aliases(uri, prompt_name)["production"] == 4
    wait_for(
        lambda: projection(testbed, namespace, "parser", prompt_name)["experiment"] is None,
        10,
        "the split to leave the projection",
    )
    assert projection(testbed, namespace, "parser", prompt_name)["version"] == 4
    assert {"Started", "Completed", "Promoted"} <= {r for _, r, _ in events(testbed, namespace, "parser-ab")}


def test_abort_then_delete_removes_the_candidate_alias(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 4)
    apply_yaml(testbed, baseline_yaml(namespace, "parser", prompt_name, 3))
    wait_baseline(testbed, namespace, "parser", 3)
    apply_yaml(testbed, experiment_yaml(namespace, "ab", "parser", 4, 20))
    wait_phase(testbed, namespace, "ab", "Completed", 20)
    wait_for(lambda: split_weight(testbed, namespace, "parser", prompt_name) == 20, 10, "the 20% split")

    aborted = cli(testbed, "abort", "ab", "-n", namespace, "--timeout", "30s")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    obj = wait_phase(testbed, namespace, "ab", "Aborted", 0)
    assert obj["status"]["history"][-1]["reason"] == "Aborted"
    assert obj["status"]["history"][-1]["actor"] == "kubectl-promptalias"
    wait_for(
        lambda: projection(testbed, namespace, "parser", prompt_name)["experiment"] is None, 10, "no split"
    )
    assert get_object(testbed, "promptalias", namespace, "parser")["spec"]["version"] == 3
    # A later promote is refused: abort is final.
    refused = cli(testbed, "promote", "ab", "-n", namespace)
    assert refused.returncode == 2
    assert "aborted" in refused.stderr

    assert aliases(testbed.mlflow_uri, prompt_name)["experimental-parser"] == 4
    testbed.kubectl("delete", "promptexperiment", "ab", "-n", namespace, "--wait=true", "--timeout=60s")
    assert aliases(testbed.mlflow_uri, prompt_name) == {"production": 3}
    assert "promptalias.io/owner.experimental-parser" not in prompt_tags(testbed.mlflow_uri, prompt_name)


def test_paused_step_waits_for_resume(
    testbed: Testbed,
    namespace: str,
    registry: str,
    prompt_name: str,
    mlflow_client: Any,
    operator_process: OperatorProcess,
) -> None:
    register(prompt_name, 2)
    apply_yaml(testbed, baseline_yaml(namespace, "parser", prompt_name, 1))
    wait_baseline(testbed, namespace, "parser", 1)
    apply_yaml(testbed, experiment_yaml(namespace, "ramp", "parser", 2, 30, "\n  steps: [{weight: 5}]"))
    wait_phase(testbed, namespace, "ramp", "Paused", 5)
    after_polls(operator_process, namespace)
    assert exp(testbed, namespace, "ramp")["status"]["phase"] == "Paused"  # no timer: it stays
    shown = cli(testbed, "status", "ramp", "-n", namespace)
    assert "waiting for `promptalias experiment resume`" in shown.stdout
    resumed = cli(testbed, "resume", "ramp", "-n", namespace, "--timeout", "30s")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    obj = wait_phase(testbed, namespace, "ramp", "Completed", 30)
    assert obj["status"]["history"][-1]["reason"] == "Completed"
    wait_for(lambda: split_weight(testbed, namespace, "parser", prompt_name) == 30, 10, "the 30% split")


def test_gitops_baseline_gets_the_git_change_not_a_patch(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 4)
    tracking_id = f"billing:promptalias.io/PromptAlias:{namespace}/parser"
    tracking = f", annotations: {{argocd.argoproj.io/tracking-id: '{tracking_id}'}}"
    apply_yaml(testbed, baseline_yaml(namespace, "parser", prompt_name, 3, tracking))
    wait_baseline(testbed, namespace, "parser", 3)
    apply_yaml(testbed, experiment_yaml(namespace, "ab", "parser", 4, 10))
    wait_phase(testbed, namespace, "ab", "Completed", 10)

    asked = cli(testbed, "promote", "ab", "-n", namespace)
    assert asked.returncode == 3, asked.stdout + asked.stderr
    assert "version: 4  # was 3" in asked.stdout
    assert "Argo CD (Application billing)" in asked.stdout

    def pending() -> dict[str, Any] | None:
        obj = exp(testbed, namespace, "ab")
        return obj if cond(obj, "Reconciling").get("reason") == "PromotionPending" else None

    obj = wait_for(pending, 20, "PromotionPending")
    assert "set `spec.version: 4` on PromptAlias parser in Git" in cond(obj, "Reconciling")["message"]
    assert obj["status"]["phase"] == "Completed"  # the split stays meanwhile
    assert get_object(testbed, "promptalias", namespace, "parser")["spec"]["version"] == 3
    assert any(r == "PromotionPending" for _, r, _ in events(testbed, namespace, "parser"))

    # Git is changed and synced (here: a patch by the "GitOps tool"): the experiment completes.
    testbed.kubectl(
        "patch", "promptalias", "parser", "-n", namespace, "--type=merge", "-p", '{"spec":{"version":4}}'
    )
    wait_phase(testbed, namespace, "ab", "Promoted", 0)
    assert not cond(exp(testbed, namespace, "ab"), "Reconciling")


def test_invalid_experiments_are_stalled(
    testbed: Testbed, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> None:
    register(prompt_name, 2)
    apply_yaml(testbed, baseline_yaml(namespace, "parser", prompt_name, 1))
    wait_baseline(testbed, namespace, "parser", 1)
    apply_yaml(testbed, experiment_yaml(namespace, "missing", "parser", 9, 10))
    apply_yaml(testbed, experiment_yaml(namespace, "nobase", "nosuch", 2, 10))

    def stalled(name: str, reason: str) -> dict[str, Any] | None:
        obj = exp(testbed, namespace, name)
        return obj if cond(obj, "Stalled").get("reason") == reason else None

    obj = wait_for(lambda: stalled("missing", "VersionNotFound"), 20, "VersionNotFound")
    assert "phase" not in obj["status"]  # nothing started
    assert cond(obj, "Ready")["status"] == "False"
    wait_for(lambda: stalled("nobase", "BaselineNotFound"), 20, "BaselineNotFound")
    assert "experimental-parser" not in aliases(testbed.mlflow_uri, prompt_name)
    # Fixing the spec recovers.
    testbed.kubectl(
        "patch",
        "promptexperiment",
        "missing",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"candidate":{"alias":"experimental-parser","version":2}}}',
    )
    recovered = wait_phase(testbed, namespace, "missing", "Completed", 10)
    assert not cond(recovered, "Stalled")
