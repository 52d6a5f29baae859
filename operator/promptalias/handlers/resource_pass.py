"""What the PromptAlias and PromptExperiment reconcile passes share: the body's identity and the result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptalias.handlers.state import World


@dataclass
class PassResult:
    """What the daemon needs after a pass: when to run again."""

    delay: float
    transient_failure: bool = False


class ResourcePass:
    """One reconcile pass over one custom resource body; subclasses parse the body into their kind."""

    def __init__(self, world: World, body: Mapping[str, Any], *, failures: int) -> None:
        self.world = world
        self.body = body
        self.failures = failures  # earlier passes that failed in a row: the retry backoff
        self.meta = body.get("metadata", {})
        self.namespace = str(self.meta.get("namespace"))
        self.name = str(self.meta.get("name"))
        self.uid = str(self.meta.get("uid"))
        self.generation = int(self.meta.get("generation") or 1)


__all__ = ["PassResult", "ResourcePass"]
