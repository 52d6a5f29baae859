"""The one way the testbed, its node and the demo run kubectl (the testbed's own build: no skew)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_kubectl(
    kubectl: str, kubeconfig: Path | str, *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`kubectl --kubeconfig=KUBECONFIG ARGS`, output captured as text; the caller judges the exit code."""
    return subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
