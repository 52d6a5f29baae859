"""Field types shared by the promptalias resources: names, references, selectors.

MLflow rules mirrored here (mlflow 3.17, see `mlflow/utils/validation.py`,
`mlflow/prompt/registry_utils.py`, `mlflow/store/workspace/abstract_store.py`):

- Prompt names: `validate_prompt_name` allows `^[a-zA-Z0-9_.-]+$`; `_validate_model_name` (run by
  `set_prompt_alias`) also refuses names that resolve to another path ("." and anything starting
  with ".."); the registered-model name column holds 256 characters. promptalias also refuses any
  leading '.': the projection file `<prompt>.<alias>.json` would be hidden, and the sidecar skips it.
- Aliases: `_validate_model_alias_name` allows `^[\\w\\-]*$`, non-empty, at most 255 characters;
  `_validate_model_alias_name_reserved` refuses "latest" (any case) and `^[vV]\\d+$` (v1, V12).
  promptalias is stricter in two ways, both documented in the messages: only ASCII letters (Python's
  `\\w` also takes other Unicode letters, which cannot appear in a ConfigMap key), and plain numbers
  ("3") are refused too, because `prompts:/name/3` means version 3 to the client.
- Workspaces: `WorkspaceNameValidator`: `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, 2..63 characters, not one
  of workspaces, api, ajax-api, static-files.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, ClassVar, Final

from pydantic import Field

from promptalias.api.base import KubeModel, atomic_list
from promptalias.api.cel import Rule, Validations, regex_check

# Re-exported (the `as` form is mypy's explicit re-export): the models and kopf handlers take them from here.
from promptalias.vocabulary import API_VERSION as API_VERSION  # noqa: PLC0414
from promptalias.vocabulary import GROUP as GROUP  # noqa: PLC0414
from promptalias.vocabulary import VERSION as VERSION  # noqa: PLC0414

# --- MLflow names -----------------------------------------------------------------------------------

PROMPT_NAME_PATTERN: Final = r"^[A-Za-z0-9_.-]+$"
PROMPT_NAME_MAX_LENGTH: Final = 256
ALIAS_PATTERN: Final = r"^[A-Za-z0-9_-]+$"
ALIAS_MAX_LENGTH: Final = 255
RESERVED_ALIAS: Final = "latest"
VERSION_LIKE_ALIAS_PATTERN: Final = r"^[vV]?[0-9]+$"
# The projection key is "<prompt>.<alias>.json" and a ConfigMap key holds at most 253 characters.
PROJECTION_KEY_MAX_LENGTH: Final = 253
PROMPT_AND_ALIAS_MAX_LENGTH: Final = PROJECTION_KEY_MAX_LENGTH - len("..json")
WORKSPACE_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
RESERVED_WORKSPACES: Final = ("workspaces", "api", "ajax-api", "static-files")
TAG_KEY_MAX_LENGTH: Final = 250
TAG_VALUE_MAX_LENGTH: Final = 5000

_version_like: Final = regex_check(VERSION_LIKE_ALIAS_PATTERN)

PromptName = Annotated[
    str,
    Field(min_length=1, max_length=PROMPT_NAME_MAX_LENGTH, pattern=PROMPT_NAME_PATTERN),
    Validations(
        Rule(
            rule="!self.startsWith('.')",
            message=(
                "prompt names must not start with '.': MLflow refuses '.' and '..' (they resolve to a path), "
                "and the sidecar, like kubelet, skips projection files whose names start with '.'"
            ),
            check=lambda value: not value.startswith("."),
        )
    ),
]
"""An MLflow prompt name: letters, digits, '_', '-' and '.', at most 256 characters."""

AliasName = Annotated[
    str,
    Field(min_length=1, max_length=ALIAS_MAX_LENGTH, pattern=ALIAS_PATTERN),
    Validations(
        Rule(
            rule=f"self.lowerAscii() != '{RESERVED_ALIAS}'",
            message="'latest' (in any case) is reserved by MLflow; choose another alias such as 'production'",
            check=lambda value: value.lower() != RESERVED_ALIAS,
        ),
        Rule(
            rule=f"!self.matches('{VERSION_LIKE_ALIAS_PATTERN}')",
            message=(
                "version-like aliases (v1, V12, 3) are reserved: MLflow and prompts:/ URIs read them as "
                "version numbers; choose a name such as 'production'"
            ),
            check=lambda value: not _version_like(value),
        ),
    ),
]
"""An MLflow alias: ASCII letters, digits, '_' and '-', at most 255 characters, not 'latest', not
version-like."""

WorkspaceName = Annotated[
    str,
    Field(min_length=2, max_length=63, pattern=WORKSPACE_PATTERN),
    Validations(
        Rule(
            rule="!(self in " + "[" + ", ".join(f"'{name}'" for name in RESERVED_WORKSPACES) + "])",
            message="workspace names workspaces, api, ajax-api and static-files are reserved by MLflow",
            check=lambda value: value not in RESERVED_WORKSPACES,
        )
    ),
]
"""An MLflow workspace name (Kubernetes DNS label rules, 2..63 characters)."""

PromptVersion = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)]
"""An MLflow prompt version number (versions start at 1)."""

TagKey = Annotated[str, Field(min_length=1, max_length=TAG_KEY_MAX_LENGTH)]
TagValue = Annotated[str, Field(max_length=TAG_VALUE_MAX_LENGTH)]

# --- Kubernetes names -------------------------------------------------------------------------------

DNS_SUBDOMAIN: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
QUALIFIED_NAME: Final = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
DNS_SUBDOMAIN_PATTERN: Final = f"^{DNS_SUBDOMAIN}$"
DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 -- the shape of a key name, not a secret
LABEL_KEY_PATTERN: Final = f"^({DNS_SUBDOMAIN}/)?{QUALIFIED_NAME}$"
LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
"""A Kubernetes object name (DNS subdomain: lowercase letters, digits, '-' and '.')."""

NamespaceName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
"""A Kubernetes namespace name (DNS label)."""

SecretKey = Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)]
"""A key of a Secret's data."""

LabelKey = Annotated[str, Field(min_length=1, max_length=317, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]


class LocalObjectReference(KubeModel):
    """A reference to an object in the same namespace."""

    name: ObjectName
    """Name of the object."""


class SelectorOperator(StrEnum):
    """How a label selector requirement compares a label with its values."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


_NEEDS_VALUES: Final = (SelectorOperator.IN, SelectorOperator.NOT_IN)


class LabelSelectorRequirement(KubeModel):
    """A label selector requirement: a key, an operator and (for In/NotIn) values."""

    __cel__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule=(
                "(self.operator == 'In' || self.operator == 'NotIn') "
                "? (has(self.values) && size(self.values) > 0) "
                ": (!has(self.values) || size(self.values) == 0)"
            ),
            message="values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
            check=lambda req: bool(req.values) == (req.operator in _NEEDS_VALUES),
        ),
    )

    key: LabelKey
    """The label key the selector applies to."""
    operator: SelectorOperator
    """In, NotIn, Exists or DoesNotExist."""
    values: Annotated[list[LabelValue], Field(max_length=64, json_schema_extra=atomic_list())] | None = None
    """The values for In and NotIn."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a set of labels satisfies this requirement."""
        if self.operator is SelectorOperator.EXISTS:
            return self.key in labels
        if self.operator is SelectorOperator.DOES_NOT_EXIST:
            return self.key not in labels
        found = self.key in labels and labels[self.key] in (self.values or [])
        return found if self.operator is SelectorOperator.IN else not found


class LabelSelector(KubeModel):
    """A Kubernetes label selector; an empty selector matches everything."""

    match_labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=64)] | None = None
    """Labels that must all be present with these values."""
    match_expressions: (
        Annotated[list[LabelSelectorRequirement], Field(max_length=64, json_schema_extra=atomic_list())]
        | None
    ) = None
    """Requirements that must all hold."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a set of labels satisfies the selector (all labels and all expressions)."""
        if any(labels.get(key) != value for key, value in (self.match_labels or {}).items()):
            return False
        return all(requirement.matches(labels) for requirement in self.match_expressions or [])
