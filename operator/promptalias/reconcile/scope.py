"""Which namespaces an operator serves: `--namespace-selector` over namespace labels (pure).

A small subset of Kubernetes label-selector syntax, comma-separated: `key=value`, `key==value`,
`key!=value`, `key` (exists), `!key` (does not exist). Empty selects everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "exists", "!exists"
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "=":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """Parse a selector; raises ValueError with the offending term."""
    requirements = []
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            requirements.append(Requirement(key.strip(), "!=", value.strip()))
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            requirements.append(Requirement(key.strip(), "=", value.strip()))
        elif term.startswith("!"):
            requirements.append(Requirement(term[1:].strip(), "!exists"))
        else:
            requirements.append(Requirement(term, "exists"))
        if not requirements[-1].key:
            raise ValueError(f"invalid namespace selector term {term!r}")
    return tuple(requirements)


def selected(requirements: tuple[Requirement, ...], labels: Mapping[str, str] | None) -> bool:
    """Unknown namespaces (labels None) are selected only by an empty selector."""
    if not requirements:
        return True
    if labels is None:
        return False
    return all(requirement.matches(labels) for requirement in requirements)
