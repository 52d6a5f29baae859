"""Synchronous helpers for tests, fixtures, demos and benchmarks, built on the `mlflow` package.

They register prompts the way users do (MLflow's own client), so the async registry is tested
against what MLflow really writes. Importing this module imports `mlflow` (about 1 s): never
import it from operator code.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from promptalias.registry.models import Template


def client(uri: str) -> Any:
    """An MlflowClient bound to `uri` for both tracking and the registry (no global state)."""
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def register_prompt_versions(
    uri: str,
    name: str,
    templates: Sequence[Template],
    *,
    response_format: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> list[int]:
    """Register each template as the next version of prompt `name`; return the version numbers.
    Commit messages are "v1", "v2"... by position, so tests can tell versions apart."""
    mlflow_client = client(uri)
    versions = []
    for i, template in enumerate(templates, start=1):
        registered = mlflow_client.register_prompt(
            name=name,
            template=template,
            commit_message=f"v{i}",
            tags=tags,
            response_format=response_format,
            model_config=model_config,
        )
        versions.append(int(registered.version))
    return versions


def register_model(uri: str, name: str) -> None:
    """A plain registered model (not a prompt) with one version, for negative tests."""
    mlflow_client = client(uri)
    mlflow_client.create_registered_model(name)
    mlflow_client.create_model_version(name=name, source="s3://bucket/model")


def set_alias_with_mlflow(uri: str, name: str, alias: str, version: int) -> None:
    """MLflow's own way to move an alias (three HTTP requests), as users do from notebooks."""
    client(uri).set_prompt_alias(name, alias, version)


@contextmanager
def spawn_mlflow_server(
    run_dir: Path,
    *extra_args: str,
    tls: tuple[Path, Path, Path] | None = None,
    timeout_s: float = 180,
) -> Iterator[str]:
    """Run a throwaway `mlflow server` on 127.0.0.1 (sqlite in `run_dir`) with extra CLI flags;
    yield its URI. `tls=(cert, key, ca)` serves https. For variants the shared testbed does not
    offer (https, workspaces); the process group is killed on exit."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    argv = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        f"--backend-store-uri=sqlite:///{run_dir / 'mlflow.db'}",
        f"--default-artifact-root={run_dir / 'artifacts'}",
        "--host=127.0.0.1",
        f"--port={port}",
        "--workers=1",
        *extra_args,
    ]
    context: ssl.SSLContext | None = None
    scheme = "http"
    if tls is not None:
        cert, key, ca = tls
        argv.append(f"--uvicorn-opts=--ssl-keyfile {key} --ssl-certfile {cert}")
        context = ssl.create_default_context(cafile=str(ca))
        scheme = "https"
    uri = f"{scheme}://127.0.0.1:{port}"
    log_path = run_dir / "mlflow.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while not _healthy(uri, context):
                if proc.poll() is not None:
                    raise RuntimeError(f"mlflow server exited early; log:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server not healthy after {timeout_s:g} s; see {log_path}")
                time.sleep(0.25)
            yield uri
        finally:
            _kill_group(proc)


def _healthy(uri: str, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(uri + "/health", timeout=1, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()
