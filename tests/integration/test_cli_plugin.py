"""`promptalias get|history|rollback|diff|versions` (and `kubectl promptalias`) on the testbed.

The CLI runs as a real process with the user's environment (KUBECONFIG, MLFLOW_TRACKING_URI);
the session operator does the work it asks for. Follow-mode rollback and takeover are exercised in
test_follow_mode.py and test_multicluster.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.test_follow_mode import Bed
from promptalias.testbed import Testbed
from promptalias.testbed.ports import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def bed(
    testbed: Testbed, k8s_api: Any, namespace: str, registry: str, prompt_name: str, mlflow_client: Any
) -> Bed:
    return Bed(testbed, k8s_api, namespace, prompt_name)


def _rows(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines()[1:]}


def test_get_and_history_as_promptalias_and_as_kubectl_plugin(bed: Bed, testbed: Testbed) -> None:
    bed.register(2)
    bed.move(1)
    bed.create("pinned", version=1)
    bed.create("follower")
    bed.wait_resolved("pinned", 1)
    bed.wait_resolved("follower", 1)

    result = bed.cli("get")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PROMPT", "ALIAS", "DESIRED", "RESOLVED", "READY", "REASON", "AGE"]
    rows = _rows(result.stdout)
    assert rows["pinned"][1:7] == [bed.prompt, "production", "1", "1", "True", "Synced"]
    assert rows["follower"][3:7] == ["follow", "1", "True", "Synced"]

    # As a kubectl plugin: kubectl finds kubectl-promptalias on PATH and passes the flags through.
    env = {
        **os.environ,
        **testbed.env(),
        "PATH": f"{Path(sys.executable).parent}:{testbed.env()['PATH']}",
    }
    plugin = subprocess.run(
        [testbed.kubectl_path, "promptalias", "get", "-n", bed.namespace],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert plugin.returncode == 0, plugin.stderr
    assert plugin.stdout.splitlines()[0] == lines[0]
    assert _rows(plugin.stdout).keys() == rows.keys()

    wide = subprocess.run(
        [str(Path(sys.executable).with_name("promptalias")), "get", "-A"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert wide.returncode == 0, wide.stderr
    assert wide.stdout.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [bed.namespace, "pinned"] in [line.split()[:2] for line in wide.stdout.splitlines()]

    as_json = json.loads(bed.cli("get", "-o", "json").stdout)
    assert as_json["kind"] == "List"
    assert sorted(item["metadata"]["name"] for item in as_json["items"]) == ["follower", "pinned"]
    one = yaml.safe_load(bed.cli("get", "pinned", "-o", "yaml").stdout)
    assert one["status"]["resolvedVersion"] == 1

    history = bed.cli("history", "follower")
    assert history.returncode == 0, history.stderr
    assert history.stdout.splitlines()[0].split() == ["TIME", "REASON", "FROM→TO", "ACTOR", "MESSAGE"]
    moves = [line.split()[1:4] for line in history.stdout.splitlines()[1:]]
    assert moves == [["Observed", "-→1", "mlflow"]]
    entries = json.loads(bed.cli("history", "pinned", "-o", "json").stdout)
    assert [(e["reason"], e["version"]) for e in entries] == [("Adopted", 1)]


def test_rollback_pinned_patches_spec_unless_gitops_applies_it(bed: Bed) -> None:
    bed.register(2)
    bed.create("prod", version=1)
    bed.wait_resolved("prod", 1)
    bed.patch("prod", {"spec": {"version": 2}})
    bed.wait_resolved("prod", 2)

    result = bed.cli("rollback", "prod")
    assert result.returncode == 0, result.stderr
    assert "spec.version 2 → 1" in result.stdout
    assert f"rolled back prompts:/{bed.prompt}@production" in result.stdout
    assert bed.get("prod")["spec"]["version"] == 1
    assert bed.aliases() == {"production": 1}
    assert bed.history("prod")[-1] == ("Rollback", 2, 1, "kubectl-promptalias")

    # Now Argo CD applies it: a live patch would be reverted, so print the Git change instead.
    tracking = f"invoice:promptalias.io/PromptAlias:{bed.namespace}/prod"
    bed.patch("prod", {"metadata": {"annotations": {"argocd.argoproj.io/tracking-id": tracking}}})
    refused = bed.cli("rollback", "prod")  # back to the previous version, 2
    assert refused.returncode == 3, refused.stderr
    assert "managed by Argo CD (Application invoice)" in refused.stderr
    snippet = yaml.safe_load(refused.stdout)
    assert snippet["metadata"] == {"name": "prod", "namespace": bed.namespace}
    assert snippet["spec"] == {"version": 2}
    assert bed.get("prod")["spec"]["version"] == 1  # nothing was patched

    forced = bed.cli("rollback", "prod", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "--force" in forced.stderr
    assert bed.aliases() == {"production": 2}


def test_diff_and_versions_read_mlflow(bed: Bed, testbed: Testbed) -> None:
    bed.register(2)
    bed.create("prod", version=1)
    bed.wait_resolved("prod", 1)

    diff = bed.cli("diff", "prod", "--to", "2")
    assert diff.returncode == 1, diff.stderr  # like kubectl diff: 1 means "differences found"
    assert diff.stdout.splitlines() == [
        f"--- prompts:/{bed.prompt}/1 (resolved)",
        f"+++ prompts:/{bed.prompt}/2",
        "@@ -1 +1 @@",
        "-v1: parse {{invoice}}",
        "+v2: parse {{invoice}}",
    ]
    same = bed.cli("diff", "prod", "--to", "1")
    assert same.returncode == 0
    assert same.stdout == ""

    owner = f"{bed.core.read_namespace('kube-system').metadata.uid}/{bed.namespace}/prod"
    for how in (("--registry-uri", testbed.mlflow_uri), ("--registry", "mlflow")):
        listing = bed.cli("versions", bed.prompt, *how)
        assert listing.returncode == 0, listing.stderr
        text = listing.stdout.split("\n\n")
        versions = _rows(text[0])
        assert versions["2"][2:] == ["-", "-", "v2"]
        assert versions["1"][2:] == ["production", "-", "v1"]
        assert _rows(text[1])["production"] == ["production", "1", owner]
    data = json.loads(bed.cli("versions", bed.prompt, "-o", "json").stdout)
    assert data["aliases"] == {"production": {"version": 1, "managedBy": owner}}
    assert [v["version"] for v in data["versions"]] == [2, 1]


def test_errors_are_clear_and_exit_2(bed: Bed) -> None:
    bed.register(1)
    bed.create("prod", version=1)
    bed.wait_resolved("prod", 1)

    missing = bed.cli("history", "nope")
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"error: PromptAlias 'nope' in namespace '{bed.namespace}': not found")

    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = bed.cli("diff", "prod", "--to", "1", "--registry-uri", dead)
    assert unreachable.returncode == 2
    assert unreachable.stderr.startswith(f"error: cannot connect to MLflow at {dead}")
    assert "port-forward" in unreachable.stderr

    no_prompt = bed.cli("versions", bed.prompt + "-missing", "--registry", "mlflow")
    assert no_prompt.returncode == 2
    assert "does not exist" in no_prompt.stderr
    no_version = bed.cli("diff", "prod", "--to", "9")
    assert no_version.returncode == 2
    assert "version 9" in no_version.stderr
    for result in (missing, unreachable, no_prompt, no_version):
        assert "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1  # one line: what went wrong; what to do
