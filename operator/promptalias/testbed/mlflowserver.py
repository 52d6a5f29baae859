"""A real `mlflow server` on 127.0.0.1 with a sqlite backend (optionally with basic auth)."""

from __future__ import annotations

import base64
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from promptalias.testbed.errors import TestbedError
from promptalias.testbed.ports import LOOPBACK
from promptalias.testbed.procs import RestartableServer, Server

ADMIN_USER = "admin"


def _mlflow_executable() -> str:
    candidate = Path(sys.executable).with_name("mlflow")
    if not candidate.exists():
        raise TestbedError(
            "start mlflow", f"no `mlflow` next to {sys.executable}", "run `make test` to create the venv"
        )
    return str(candidate)


@dataclass
class MlflowServer(RestartableServer):
    """One MLflow tracking server. Stop and start again keep the same port and database."""

    run_dir: Path
    basic_auth: bool = False
    admin_password: str = field(default_factory=lambda: base64.urlsafe_b64encode(os.urandom(12)).decode())
    tied: bool = True
    port: int = 0
    webhook_key: str = field(default_factory=lambda: base64.urlsafe_b64encode(os.urandom(32)).decode())
    server: Server | None = None
    host: str = LOOPBACK  # the node's private IP when pods must reach it
    # Host headers MLflow accepts besides its defaults (loopback, private IPs): names pods use for it.
    extra_hosts: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "MLFLOW_DISABLE_TELEMETRY": "true",
                # Webhooks (prompt_alias.*) need an encryption key and, for a loopback receiver,
                # permission to call private addresses.
                "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": self.webhook_key,
                "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
                # The operator's receiver on loopback speaks http; and see new webhooks at once.
                "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
                "MLFLOW_WEBHOOK_CACHE_TTL": "1",
                "PYTHONUNBUFFERED": "1",
                # The background job runner (huey, 7 processes) serves GenAI evaluation jobs, not the
                # prompt registry; webhooks are delivered from a thread pool in the web process.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            }
        )
        if self.extra_hosts:
            # MLflow refuses unknown Host headers (DNS-rebinding protection); setting the list
            # replaces its defaults, so they are repeated here.
            hosts = ["localhost", "localhost:*", LOOPBACK, f"{LOOPBACK}:*", self.host, f"{self.host}:*"]
            hosts += [pattern for host in self.extra_hosts for pattern in (host, f"{host}:*")]
            env["MLFLOW_SERVER_ALLOWED_HOSTS"] = ",".join(dict.fromkeys(hosts))
        if self.basic_auth:
            ini = self.run_dir / "basic_auth.ini"
            ini.write_text(
                "[mlflow]\n"
                "default_permission = READ\n"
                f"database_uri = sqlite:///{self.run_dir / 'auth.db'}\n"
                f"admin_username = {ADMIN_USER}\n"
                f"admin_password = {self.admin_password}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                "grant_default_workspace_access = true\n"
            )
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", base64.b64encode(os.urandom(24)).decode())
        return env

    def start(self, timeout_s: float = 240) -> None:  # 163 s measured on a loaded machine
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._claim_port("mlflow", self.host)
        argv = [
            _mlflow_executable(),
            "server",
            f"--backend-store-uri=sqlite:///{self.run_dir / 'mlflow.db'}",
            f"--default-artifact-root={self.run_dir / 'artifacts'}",
            f"--host={self.host}",
            f"--port={self.port}",
            "--workers=1",
        ]
        if self.basic_auth:
            argv.append("--app-name=basic-auth")
        name = "mlflow-basic-auth" if self.basic_auth else "mlflow"
        self._run(
            Server(name, argv, self.run_dir / f"{name}.log", env=self.env(), tied=self.tied),
            self.uri + "/health",
            timeout_s,
            "see the mlflow log above; is the venv complete?",
        )
