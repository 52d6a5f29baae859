"""TLS against a real `mlflow server` serving https (uvicorn with a throwaway CA)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from promptalias.registry import MlflowRegistry, RegistryConfig, RegistryTLSError, ServerInfo, VersionCache
from promptalias.testbed.certs import Pki, write_pki

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class TlsMlflow:
    port: int
    pki: Pki

    @property
    def uri(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tls_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsMlflow]:
    run_dir = tmp_path_factory.mktemp("tls-mlflow")
    pki = write_pki(run_dir / "pki")
    port = _free_port()
    argv = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        f"--backend-store-uri=sqlite:///{run_dir / 'mlflow.db'}",
        f"--default-artifact-root={run_dir / 'artifacts'}",
        "--host=127.0.0.1",
        f"--port={port}",
        "--workers=1",
        f"--uvicorn-opts=--ssl-keyfile {pki.serving_key} --ssl-certfile {pki.serving_crt}",
    ]
    log = (run_dir / "mlflow.log").open("wb")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = TlsMlflow(port, pki)
    try:
        context = ssl.create_default_context(cafile=str(pki.ca_crt))
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"mlflow exited: {(run_dir / 'mlflow.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(server.uri + "/health", timeout=1, context=context) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the https MLflow server did not become healthy in 90 s")
            time.sleep(0.25)
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def check(config: RegistryConfig) -> ServerInfo:
    async def main() -> ServerInfo:
        async with MlflowRegistry(config, cache=VersionCache()) as registry:
            return await registry.check()

    return asyncio.run(main())


def test_ca_data_verifies_the_server(tls_mlflow: TlsMlflow) -> None:
    info = check(RegistryConfig(tls_mlflow.uri, ca_data=tls_mlflow.pki.ca_crt.read_text()))
    assert info.version


def test_ca_file_and_host_name(tls_mlflow: TlsMlflow) -> None:
    check(RegistryConfig(f"https://localhost:{tls_mlflow.port}", ca_file=str(tls_mlflow.pki.ca_crt)))


def test_unknown_ca_is_a_tls_error(tls_mlflow: TlsMlflow) -> None:
    with pytest.raises(RegistryTLSError, match="certificate verification failed") as info:
        check(RegistryConfig(tls_mlflow.uri))
    assert "set the registry's CA bundle" in str(info.value)


def test_insecure_skip_verify(tls_mlflow: TlsMlflow) -> None:
    check(RegistryConfig(tls_mlflow.uri, insecure_skip_verify=True))
