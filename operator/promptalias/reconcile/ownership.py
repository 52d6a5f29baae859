"""Who holds an alias: in-cluster claims (oldest PromptAlias wins) and the MLflow-side owner mark.

Two PromptAliases in one cluster that name the same registry/prompt/alias are settled by age; the
loser never writes. Across clusters sharing one MLflow, the writer marks the prompt with a tag per
alias naming cluster/namespace/name, and refuses to move an alias that another owner has marked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from promptalias.vocabulary import OWNER_TAG_PREFIX


def owner_tag_key(alias: str) -> str:
    """The MLflow prompt tag that records who manages `alias`."""
    return f"{OWNER_TAG_PREFIX}{alias}"


@dataclass(frozen=True, order=True)
class Owner:
    """A PromptAlias somewhere: the identity written into the MLflow owner tag."""

    cluster: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"

    def to_tag(self) -> str:
        return json.dumps({"cluster": self.cluster, "namespace": self.namespace, "name": self.name})

    @classmethod
    def from_tag(cls, value: str | None) -> Owner | None:
        """Parse a tag value; an unreadable value is an owner we cannot identify (never us)."""
        if not value:
            return None
        try:
            data = json.loads(value)
            return cls(str(data["cluster"]), str(data["namespace"]), str(data["name"]))
        except (ValueError, KeyError, TypeError):
            return cls("unknown", "unknown", value[:200])


@dataclass(frozen=True)
class Claim:
    """One PromptAlias's claim on (registry endpoint, prompt, alias)."""

    endpoint: str  # tracking URI (+ workspace): two registry objects may name the same MLflow
    prompt: str
    alias: str
    namespace: str
    name: str
    uid: str
    created: datetime
    writes: bool  # follow-mode resources only read, so they never conflict

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.endpoint, self.prompt, self.alias)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def winner(claims: Iterable[Claim], key: tuple[str, str, str]) -> Claim | None:
    """The writing claim that holds `key`: the oldest, ties broken by namespace/name then uid."""
    contenders = [claim for claim in claims if claim.writes and claim.key == key]
    if not contenders:
        return None
    return min(contenders, key=lambda claim: (claim.created, claim.namespace, claim.name, claim.uid))
