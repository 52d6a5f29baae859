"""CEL validation rules declared once, next to the model field or class they guard.

A `Rule` carries the CEL expression the apiserver evaluates (`x-kubernetes-validations`) and, when
the rule can be checked without the old object, its Python twin (`check`). The twin lets code that
builds a spec in Python (CLI, tests) fail with the same message before anything reaches the
apiserver; the integration tests run one table of invalid objects through both, so the twins cannot
drift apart silently.

Attach rules to a type with `Annotated[T, Validations(rule, ...)]`, or to a model class with
`__cel__ = (rule, ...)` on a `KubeModel` subclass (see `promptalias.api.base`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

VALIDATIONS_KEY: Final = "x-kubernetes-validations"

FieldReason = Literal["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"]


@dataclass(frozen=True)
class Rule:
    """One `x-kubernetes-validations` entry and its optional Python twin."""

    rule: str
    """The CEL expression; `self` is the value of the field (or object) the rule is attached to."""
    message: str
    """What the user reads when the rule fails: what is wrong and what to do instead."""
    check: Callable[[Any], bool] | None = None
    """Python twin of `rule`, given the parsed value (a model instance for class rules). None for
    transition rules (`oldSelf`) and anything only the apiserver can decide."""
    field_path: str | None = None
    """JSON path (relative to `self`) the error is reported at, e.g. `.auth.secretRef.namespace`."""
    reason: FieldReason | None = None

    def to_schema(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            entry["fieldPath"] = self.field_path
        if self.reason is not None:
            entry["reason"] = self.reason
        return entry

    def validate(self, value: Any) -> None:
        """Raise ValueError(message) when the Python twin rejects `value`."""
        if self.check is not None and not self.check(value):
            raise ValueError(self.message)


def cel_quote(text: str) -> str:
    """A CEL string literal for `text` (backslashes and quotes escaped), e.g. for a regex."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def immutable(field: str) -> Rule:
    """A transition rule: the field keeps its value once created (only the apiserver can check it)."""
    return Rule(
        rule="self == oldSelf",
        message=(
            f"{field} is immutable: it names the MLflow object this resource manages; "
            "delete the resource and create a new one instead"
        ),
    )


def regex_check(pattern: str) -> Callable[[Any], bool]:
    """Python twin of CEL `self.matches(pattern)`: an unanchored RE2 search.

    Patterns here use the syntax RE2 and Python's `re` share. One difference is handled: a final `$`
    is the end of the text in RE2 but may match before a trailing newline in Python, so it becomes
    `\\Z` here, and classes such as `\\s` and `\\w` are ASCII-only, as in RE2.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    compiled = re.compile(pattern, re.ASCII)

    def check(value: Any) -> bool:
        return isinstance(value, str) and compiled.search(value) is not None

    return check


class Validations:
    """`Annotated` metadata attaching CEL rules to a type, and their Python twins to validation."""

    __slots__ = ("rules",)

    def __init__(self, *rules: Rule) -> None:
        self.rules = rules

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        if not any(rule.check is not None for rule in self.rules):
            return schema
        rules = self.rules

        def run_checks(value: Any) -> Any:
            for rule in rules:
                rule.validate(value)
            return value

        return core_schema.no_info_after_validator_function(run_checks, schema)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault(VALIDATIONS_KEY, []).extend(rule.to_schema() for rule in self.rules)
        return json_schema
