"""End to end: operator, sidecar and the example app as real processes on the testbed.

kubectl patch -> operator moves the MLflow alias and the projection -> sidecar writes the files ->
the running app (examples/invoice-parser/app.py, using promptalias.client) serves the new version.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kit import OperatorProcess, apply_yaml, wait_for
from promptalias.sidecar.testing import SidecarProcess
from promptalias.testbed import Testbed
from promptalias.testbed.ports import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "invoice-parser" / "app.py"


class App:
    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.proc = proc

    def get(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/parse?text=ACME", timeout=2) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body

    def version(self) -> int:
        return int(self.get()["version"])


@pytest.fixture
def stack(
    testbed: Testbed,
    namespace: str,
    registry: str,
    operator_process: OperatorProcess,
    prompt_name: str,
    mlflow_client: Any,
    tmp_path: Path,
) -> Iterator[tuple[SidecarProcess, App, str]]:
    import mlflow.genai

    for n in range(1, 4):
        mlflow.genai.register_prompt(name=prompt_name, template=f"v{n}: parse {{{{text}}}}")
    apply_yaml(
        testbed,
        f"""
apiVersion: promptalias.io/v1alpha1
kind: PromptAlias
metadata: {{name: parser, namespace: {namespace}}}
spec: {{registryRef: {{name: mlflow}}, prompt: {prompt_name}, alias: production, version: 2}}
""",
    )
    prompts = tmp_path / "prompts"
    env = testbed.env()
    sidecar = SidecarProcess(
        ["--namespace", namespace, "--dir", str(prompts), "--names", "promptalias-parser"],
        env=env,
        log=tmp_path / "sidecar.log",
    )
    sidecar.start()
    port = free_port()
    app_env = {
        **env,
        "PROMPT_URI": f"prompts:/{prompt_name}/production",
        "PROMPTALIAS_PROMPTS_DIR": str(prompts),
        "PROMPTALIAS_SIDECAR_URL": sidecar.url,
        "PROMPTALIAS_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": env["PATH"],
    }
    with (tmp_path / "app.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, str(APP), str(port)], env=app_env, stdout=log, stderr=subprocess.STDOUT
        )
    app = App(port, proc)
    try:
        wait_for(lambda: app.version() == 2, 60, "the app to serve version 2")
        yield sidecar, app, prompt_name
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        sidecar.stop()


def serves(app: App, version: int) -> bool:
    return app.version() == version


def patch_version(testbed: Testbed, namespace: str, version: int) -> None:
    testbed.kubectl(
        "patch",
        "promptalias",
        "parser",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"version": version}}),
    )


def test_flip_and_rollback_reach_the_running_app(
    testbed: Testbed, namespace: str, stack: tuple[SidecarProcess, App, str]
) -> None:
    _, app, _ = stack
    pid = app.proc.pid
    for version in (3, 2, 3):
        patch_version(testbed, namespace, version)
        started = time.monotonic()
        wait_for(functools.partial(serves, app, version), 10, f"the app to serve version {version}")
        assert time.monotonic() - started < 5
    assert app.proc.pid == pid
    assert app.proc.poll() is None  # no restart
    assert app.get()["prompt"] == "v3: parse ACME"


def test_app_keeps_serving_through_an_mlflow_outage_and_a_sidecar_restart(
    testbed: Testbed, namespace: str, stack: tuple[SidecarProcess, App, str]
) -> None:
    sidecar, app, _ = stack
    testbed.mlflow.stop()
    try:
        for _ in range(20):
            assert app.version() == 2
            time.sleep(0.05)
    finally:
        testbed.mlflow.start()
    sidecar.stop()
    assert app.version() == 2  # the files stay; the app does not depend on the sidecar process
    patch_version(testbed, namespace, 3)
    sidecar.start()
    wait_for(lambda: app.version() == 3, 60, "the restarted sidecar to deliver version 3")


def test_unknown_prompt_is_a_clear_error(stack: tuple[SidecarProcess, App, str], tmp_path: Path) -> None:
    sidecar, _, _ = stack
    code = (
        "from promptalias.client import load_prompt, PromptNotFoundError\n"
        "try:\n    load_prompt('prompts:/no-such-prompt@production')\n"
        "except PromptNotFoundError as exc:\n    print('NOT FOUND:', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={
            "PROMPTALIAS_PROMPTS_DIR": str(tmp_path / "empty"),
            "PROMPTALIAS_SIDECAR_URL": sidecar.url,
            "PROMPTALIAS_CACHE_DIR": str(tmp_path / "cache"),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.startswith("NOT FOUND:"), result.stdout + result.stderr
    assert "no-such-prompt" in result.stdout
