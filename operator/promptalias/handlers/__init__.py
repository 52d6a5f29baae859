"""kopf handlers: thin glue from watch events to reconcile/ (decisions) and registry/ (MLflow).

Importing this package registers every handler with kopf's default registry.
"""

from promptalias.handlers import aliases, metrics, registries, startup

__all__ = ["aliases", "metrics", "registries", "startup"]
