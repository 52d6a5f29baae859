"""MLflow prompt-alias webhooks: the receiver and the registration, one module each.

- `handlers/webhook_receiver.py`: the HTTP receiver (verify a delivery, read the prompt it names,
  wake its workers), hardened for a port anyone on the network may reach;
- `handlers/webhook_registration.py`: one webhook in MLflow per registry that asks for it;
- `reconcile/webhook_secret.py`: which secrets are accepted during a rotation (pure);
- `reconcile/webhook_route.py`: the delivery URL of a registry and the registry of a path (pure).

Importing this module registers both sets of kopf handlers; the names below are the public ones.
"""

from __future__ import annotations

from promptalias.handlers import webhook_registration  # noqa: F401 - registers its kopf handlers
from promptalias.handlers.webhook_receiver import (
    LISTEN_ENV,
    MAX_BODY_BYTES,
    URL_ENV,
    Receiver,
    read_webhook_secret,
)
from promptalias.reconcile.webhook_route import CLUSTER_SCOPE, PATH_PREFIX, webhook_url

__all__ = [
    "CLUSTER_SCOPE",
    "LISTEN_ENV",
    "MAX_BODY_BYTES",
    "PATH_PREFIX",
    "URL_ENV",
    "Receiver",
    "read_webhook_secret",
    "webhook_url",
]
