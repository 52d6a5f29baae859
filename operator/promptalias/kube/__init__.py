"""The operator's only Kubernetes API access outside kopf itself: Secrets, ConfigMaps, status.

The generated `kubernetes` client is synchronous; calls run in worker threads so the event loop
never blocks. Errors are mapped to the small set the handlers act on.
"""

from promptalias.kube.client import Kube, KubeError, NotFound

__all__ = ["Kube", "KubeError", "NotFound"]
