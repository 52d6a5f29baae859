"""The operator's only Kubernetes API access outside kopf itself: Secrets, ConfigMaps, status.

Requests run on the event loop (aiohttp); the `kubernetes` package only loads the credentials.
Errors are mapped to the small set the handlers act on.
"""

from promptalias.kube.client import Kube, KubeError, NotFound

__all__ = ["Kube", "KubeError", "NotFound"]
