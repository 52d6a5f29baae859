"""A real Prometheus server (Debian's `prometheus` package, 2.42) on 127.0.0.1 for the analysis tests.

It scrapes the targets in a file_sd file every second (`set_targets` rewrites it; Prometheus
re-reads it on change), keeps its TSDB in the run directory, and can be stopped and started again on
the same port and data — the tests use that to show the analysis holding while it is down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from promptalias.testbed.errors import TestbedError
from promptalias.testbed.ports import LOOPBACK
from promptalias.testbed.procs import RestartableServer, Server

CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: apps
    scrape_interval: 1s
    scrape_timeout: 1s
    file_sd_configs:
      - files: ["{targets}"]
        refresh_interval: 1s
"""


def prometheus_binary() -> str:
    """The `prometheus` binary; installed from Debian's package when missing and we are root."""
    found = shutil.which("prometheus")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (
            ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
        ):
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if argv[1] == "install" and done.returncode == 0:
                break
        found = shutil.which("prometheus")
        if found:
            return found
    raise TestbedError(
        "start prometheus",
        "no `prometheus` on PATH",
        "install Debian's package: apt-get install prometheus",
    )


@dataclass
class PrometheusServer(RestartableServer):
    """One Prometheus; `uri` is its HTTP API base, e.g. http://127.0.0.1:9090."""

    run_dir: Path
    tied: bool = True
    port: int = 0
    targets: list[str] = field(default_factory=list)
    server: Server | None = None

    @property
    def uri(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def _targets_file(self) -> Path:
        return self.run_dir / "targets.json"

    def set_targets(self, targets: list[str]) -> None:
        """Scrape these host:port targets (each serves /metrics)."""
        self.targets = list(targets)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": self.targets, "labels": {"source": "testbed"}}]))
        tmp.replace(self._targets_file)

    def start(self, timeout_s: float = 60) -> None:
        binary = prometheus_binary()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self._targets_file.exists():
            self.set_targets(self.targets)
        config = self.run_dir / "prometheus.yml"
        config.write_text(CONFIG.format(targets=self._targets_file))
        self._claim_port("prometheus")
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.run_dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        self._run(
            Server("prometheus", argv, self.run_dir / "prometheus.log", tied=self.tied),
            self.uri + "/-/ready",
            timeout_s,
            "see the prometheus log above",
        )


__all__ = ["PrometheusServer", "prometheus_binary"]
