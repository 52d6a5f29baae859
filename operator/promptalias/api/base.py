"""Base model for everything that appears in a custom resource, and schema annotations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from promptalias.api.cel import VALIDATIONS_KEY, Rule


class KubeModel(BaseModel):
    """A part of a custom resource: camelCase on the wire, snake_case in Python.

    Unknown fields are ignored, so an operator reading objects written under a newer schema keeps
    working. Field docstrings become the descriptions `kubectl explain` shows. Class-level CEL rules
    go in `__cel__`; they are inherited, base class rules first.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="ignore",
    )

    __cel__: ClassVar[tuple[Rule, ...]] = ()

    @classmethod
    def cel_rules(cls) -> tuple[Rule, ...]:
        """The class-level rules of this model, inherited ones first."""
        rules: list[Rule] = []
        for klass in reversed(cls.__mro__):
            rules.extend(klass.__dict__.get("__cel__", ()))
        return tuple(rules)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler, /
    ) -> JsonSchemaValue:
        json_schema = super().__get_pydantic_json_schema__(schema, handler)
        rules = cls.cel_rules()
        if rules:
            target = handler.resolve_ref_schema(json_schema)
            target.setdefault(VALIDATIONS_KEY, []).extend(rule.to_schema() for rule in rules)
        return json_schema

    @model_validator(mode="after")
    def _check_cel_twins(self) -> Self:
        for rule in type(self).cel_rules():
            rule.validate(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, JSON types, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def plain(value: Any) -> Any:
    """Deep-copy a (possibly read-only, kopf-wrapped) mapping into plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def map_list(*keys: str) -> dict[str, Any]:
    """Schema extras for a list merged by key (`x-kubernetes-list-type: map`), e.g. conditions by type."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def atomic_list() -> dict[str, Any]:
    """Schema extras for a list replaced as a whole by server-side apply."""
    return {"x-kubernetes-list-type": "atomic"}


def set_list() -> dict[str, Any]:
    """Schema extras for a list of unique scalars."""
    return {"x-kubernetes-list-type": "set"}
