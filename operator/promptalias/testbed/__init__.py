"""Local testbed: a real loopback Kubernetes control plane and a real MLflow server."""

from promptalias.testbed.bed import Testbed, detached_state, stop_detached
from promptalias.testbed.build import K8S_VERSION, ensure_binaries
from promptalias.testbed.errors import TestbedError
from promptalias.testbed.mlflowserver import MlflowServer

__all__ = [
    "K8S_VERSION",
    "MlflowServer",
    "Testbed",
    "TestbedError",
    "detached_state",
    "ensure_binaries",
    "stop_detached",
]
