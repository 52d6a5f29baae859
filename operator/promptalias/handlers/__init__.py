"""kopf handlers: thin glue from watch events to reconcile/ (decisions) and registry/ (MLflow).

Importing this package registers every handler with kopf's default registry.
"""

from promptalias.handlers import aliases, injection, memory, metrics, projections, registries, startup

__all__ = ["aliases", "injection", "memory", "metrics", "projections", "registries", "startup"]
from promptalias.handlers import experiments, webhooks  # noqa: F401 - after startup: they need memo.world
